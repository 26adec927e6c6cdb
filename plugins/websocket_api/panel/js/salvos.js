// Salvos: the list, a preview of what a salvo would change against the tally now, the take,
// and the result crosspoint by crosspoint (confirmed, or refused with the router's or the
// API's reason). The result also says what each confirmed crosspoint carried before.
//
// A preview needs the salvo's crosspoints: the snapshot lists each salvo's name, router,
// size (`crosspoints`) and `contents` ({level, destination, source} each), and the preview
// compares each with the tally. From a node that gives no contents, the panel learns them
// from the salvo's first take (its result lists every crosspoint, taken or refused) and
// previews it from then on, until the node says the salvos changed; before that, it says
// how many crosspoints the salvo holds.

import { h, replace } from "./dom.js";
import { gate } from "./permissions.js";

/** The (level, destination, source) triples of a salvo, when the node gave them; else null. */
export function salvoCrosspoints(salvo, rt) {
  const given = Array.isArray(salvo.contents) ? salvo.contents
    : Array.isArray(salvo.crosspoints) ? salvo.crosspoints : null;
  if (!given || !rt) return null;
  const out = [];
  for (const xp of given) {
    const levels = xp.level ? [xp.level] : (xp.levels || rt.levels);
    for (const level of levels) out.push({ level, destination: xp.destination, source: xp.source });
  }
  return out;
}

/** What taking `crosspoints` would change on `rt` now: each with `current`, `change`, and
 * `blocked` (a protect or lock of someone else: the take will be refused there). */
export function preview(rt, crosspoints, me) {
  return crosspoints.map((xp) => {
    const current = rt.source(xp.level, xp.destination);
    const held = rt.protectsOf(xp.destination).get(xp.level);
    const blocked = held && (held.kind === "lock" || held.owner !== me) ? held : null;
    return { ...xp, current, change: current !== xp.source, blocked };
  });
}

export class SalvoPanel {
  /** @param {object} deps {conn, tally, perms, section, toggle} */
  constructor({ conn, tally, perms, section, toggle }) {
    this.conn = conn;
    this.tally = tally;
    this.perms = perms;
    this.section = section;
    this.toggle = toggle;
    this.open = null; // name of the salvo whose preview or result is shown
    this.results = new Map(); // name -> {state: "taking" | "done" | "error", result, before, error}
    this.learnt = new Map(); // name -> its crosspoints, from the result of a take
    this.list = h("ul", { class: "salvo-list" });
    this.detail = h("div", { class: "salvo-detail", aria: { live: "polite" } });
    replace(section, h("h2", {}, "Salvos"), this.list, this.detail);
    toggle.addEventListener("click", () => this.setShown(section.hidden));
    this._rows = new Map();
  }

  /** The salvos changed on the node: what was learnt from earlier takes may be stale. */
  forget() {
    this.learnt.clear();
  }

  setShown(shown) {
    this.section.hidden = !shown;
    this.toggle.setAttribute("aria-expanded", String(shown));
    if (shown) this.draw();
  }

  /** Redraw the list (a `salvos` event, a snapshot) and the open preview or result. */
  draw() {
    if (this.section.hidden) return;
    const salvos = this.tally.salvos;
    const names = new Set(salvos.map((s) => s.name));
    for (const [name, row] of this._rows) {
      if (!names.has(name)) {
        row.li.remove();
        this._rows.delete(name);
      }
    }
    if (!salvos.length) {
      replace(this.list, h("li", { class: "empty" }, "No salvos are defined (salvos.json)."));
      this._rows.clear();
    } else {
      const items = salvos.map((s) => this._row(s));
      if (this.list.firstChild && this.list.firstChild.classList.contains("empty")) replace(this.list);
      items.forEach((li, i) => {
        if (this.list.children[i] !== li) this.list.insertBefore(li, this.list.children[i] || null);
      });
    }
    this._drawDetail();
  }

  _row(salvo) {
    let row = this._rows.get(salvo.name);
    if (!row) {
      const info = h("span", { class: "salvo-info" });
      const previewButton = h("button", { type: "button", class: "secondary",
        aria: { expanded: "false" }, onclick: () => this._toggle(salvo.name) }, "Preview");
      const takeButton = h("button", { type: "button", class: "take",
        onclick: () => this.take(salvo.name) }, "Take");
      const li = h("li", { class: "salvo", dataset: { salvo: salvo.name } },
        h("span", { class: "salvo-name" }, salvo.name), info, previewButton, takeButton);
      row = { li, info, previewButton, takeButton };
      this._rows.set(salvo.name, row);
    }
    const count = typeof salvo.crosspoints === "number" ? salvo.crosspoints
      : Array.isArray(salvo.crosspoints) ? salvo.crosspoints.length : 0;
    row.info.textContent = `${salvo.router} · ${count} crosspoint${count === 1 ? "" : "s"}`;
    row.previewButton.setAttribute("aria-expanded", String(this.open === salvo.name));
    const state = this.results.get(salvo.name);
    gate(row.takeButton, this.perms.why("salvo", salvo.router)
      || (state && state.state === "taking" ? "Taking it now: wait for the result." : null));
    return row.li;
  }

  /** Preview pressed: show the preview (in place of a result shown), or hide it. */
  _toggle(name) {
    const state = this.results.get(name);
    if (this.open === name && state && state.state !== "taking") {
      this.results.delete(name);
    } else {
      this.open = this.open === name ? null : name;
      if (state && state.state !== "taking") this.results.delete(name);
    }
    this.draw();
  }

  _label(rt, xp) {
    return `${rt ? rt.destinationLabel(xp.destination) : xp.destination} ${xp.level}`;
  }

  _src(rt, s) {
    if (!s) return "?";
    return rt ? rt.sourceLabel(s) : String(s);
  }

  _drawDetail() {
    const salvo = this.tally.salvos.find((s) => s.name === this.open);
    if (!salvo) {
      replace(this.detail);
      return;
    }
    const rt = this.tally.router(salvo.router);
    const state = this.results.get(salvo.name);
    if (state) {
      replace(this.detail, this._result(salvo, rt, state));
      return;
    }
    const crosspoints = salvoCrosspoints(salvo, rt) || this.learnt.get(salvo.name);
    if (!crosspoints) {
      const count = typeof salvo.crosspoints === "number" ? salvo.crosspoints : "its";
      replace(this.detail, h("p", { class: "salvo-note" },
        `Salvo ${salvo.name}: ${count} crosspoints on router ${salvo.router}. This node does not `
        + "send a salvo's crosspoints before it is taken, so what it would change can be shown "
        + "only after its first take from this panel. The take's result lists each crosspoint "
        + "with the source it replaced."));
      return;
    }
    const me = this.conn.user ? this.conn.user.name : null;
    const rows = preview(rt, crosspoints, me);
    const changes = rows.filter((r) => r.change).length;
    const blocked = rows.filter((r) => r.blocked).length;
    replace(this.detail,
      h("p", { class: "salvo-summary" }, `Salvo ${salvo.name} would change ${changes} of `
        + `${rows.length} crosspoints${blocked ? `; ${blocked} held by a protect or lock would be refused` : ""}.`),
      h("table", { class: "salvo-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Destination"), h("th", {}, "Now"), h("th", {}, "After"), h("th", {}, ""))),
        h("tbody", {}, rows.map((r) => h("tr", { dataset: { change: r.change ? "yes" : "no", blocked: r.blocked ? "yes" : "no" } },
          h("td", {}, this._label(rt, r)), h("td", {}, this._src(rt, r.current)),
          h("td", {}, this._src(rt, r.source)),
          h("td", {}, r.blocked ? `${r.blocked.kind === "lock" ? "locked" : "protected"} by ${r.blocked.owner}`
            : r.change ? "changes" : "no change"))))));
  }

  _result(salvo, rt, state) {
    if (state.state === "taking") return h("p", { class: "salvo-summary" }, `Taking ${salvo.name}…`);
    if (state.state === "error") {
      return h("p", { class: "inline-message", dataset: { kind: "error" } },
        `Salvo ${salvo.name} not taken: ${state.error}`);
    }
    const { taken = [], refused = [] } = state.result;
    const before = state.before;
    const was = (xp) => {
      const column = before.get(xp.level);
      return column ? ` (was ${this._src(rt, column[xp.destination])})` : "";
    };
    return [
      h("p", { class: "salvo-summary", dataset: { kind: refused.length ? "error" : "ok" } },
        `Salvo ${salvo.name}: ${taken.length} confirmed, ${refused.length} refused.`),
      h("ul", { class: "salvo-result" },
        taken.map((xp) => h("li", { dataset: { result: "confirmed" } },
          h("span", { class: "mark", aria: { hidden: "true" } }, "✓"),
          ` ${this._label(rt, xp)} ← ${this._src(rt, xp.source)}${was(xp)}: confirmed`)),
        refused.map((xp) => h("li", { dataset: { result: "refused" } },
          h("span", { class: "mark", aria: { hidden: "true" } }, "✗"),
          ` ${this._label(rt, xp)} ← ${this._src(rt, xp.source)}: refused (${xp.code}): ${xp.reason}`))),
    ];
  }

  /** Take salvo `name` and show its result. */
  async take(name) {
    const salvo = this.tally.salvos.find((s) => s.name === name);
    if (!salvo) return;
    const rt = this.tally.router(salvo.router);
    const before = new Map(); // level -> a copy of its column, to say what each replaced
    if (rt) for (const level of rt.levels) before.set(level, rt.xp.get(level).slice());
    this.open = name;
    this.results.set(name, { state: "taking" });
    this.draw();
    try {
      const result = await this.conn.request("salvo", { name });
      if (rt) this.tally.applyCrosspoints(salvo.router, result.taken || []);
      this.learnt.set(name, [...(result.taken || []), ...(result.refused || [])]
        .map(({ level, destination, source }) => ({ level, destination, source })));
      this.results.set(name, { state: "done", result, before });
    } catch (error) {
      this.results.set(name, { state: "error", error: error.message });
    }
    this.draw();
  }
}
