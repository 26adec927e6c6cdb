// The selection pane: the selected destination (its source on every level, who protects or
// locks it, the last refusal of a take on it, protect/lock/release, rename) and the selected
// source (everything it feeds: the reverse tally, and rename), with the take in progress.

import { h, replace, setText } from "./dom.js";
import { LabelEditor } from "./labels.js";
import { ProtectControls } from "./protect.js";

/** At most this many destinations are listed for a source; the rest are counted. */
const MAX_LISTED = 48;

export class DetailPane {
  /** @param {object} deps {conn, tally, perms, take, levels, confirm, element} */
  constructor(deps) {
    Object.assign(this, deps);
    this.panel = null;
    this.protect = new ProtectControls(deps);
    this.destLabel = new LabelEditor({ conn: deps.conn, perms: deps.perms, kind: "destination" });
    this.srcLabel = new LabelEditor({ conn: deps.conn, perms: deps.perms, kind: "source" });
    this.destTitle = h("h2", { class: "detail-title" });
    this.destTable = h("table", { class: "level-table" });
    this.destError = h("p", { class: "inline-message", role: "alert", dataset: { kind: "error" } });
    this.destBlock = h("div", { class: "detail-dest" },
      h("div", { class: "detail-head" }, this.destTitle, this.destLabel.element),
      this.destTable, this.destError, this.protect.element);
    this.srcTitle = h("h2", { class: "detail-title" });
    this.srcFeeds = h("p", { class: "feeds-list" });
    this.hint = h("p", { class: "take-hint", aria: { live: "polite" } });
    this.srcBlock = h("div", { class: "detail-src" },
      h("div", { class: "detail-head" }, this.srcTitle, this.srcLabel.element), this.srcFeeds);
    this.empty = h("p", { class: "detail-empty" },
      "Choose a destination, then a source. Arrows move, typing searches, Enter takes, Esc clears.");
    replace(this.element, this.empty, this.destBlock, this.srcBlock, this.hint);
  }

  setPanel(panel) {
    this.panel = panel;
    this.draw();
  }

  draw() {
    const rt = this.panel ? this.tally.router(this.panel.router) : null;
    const d = this.take.destination;
    const s = this.take.source;
    this.empty.hidden = Boolean(rt && (d !== null || s !== null));
    this.destBlock.hidden = !rt || d === null;
    this.srcBlock.hidden = !rt || s === null;
    if (!rt) return;
    if (d !== null) this._drawDestination(rt, d);
    if (s !== null) this._drawSource(rt, s);
    this._drawHint(rt, d, s);
  }

  _drawDestination(rt, d) {
    setText(this.destTitle, `${rt.destinationLabel(d)} · destination ${d}`);
    this.destLabel.draw(rt, d);
    const held = rt.protectsOf(d);
    const rows = this.panel.levels.map((level) => {
      const src = rt.source(level, d);
      const p = held.get(level);
      return h("tr", { dataset: { level } },
        h("th", { scope: "row" }, level),
        h("td", {}, src ? `${rt.sourceLabel(src)} (${src})` : "unknown"),
        h("td", {}, p ? `${p.kind === "lock" ? "locked" : "protected"} by ${p.owner}` : ""));
    });
    replace(this.destTable, h("tbody", {}, rows));
    const error = this.take.errorOn(d);
    setText(this.destError, error ? `Take refused: ${error.message}` : "");
    this.destError.hidden = !error;
    this.protect.draw(rt, d);
  }

  _drawSource(rt, s) {
    setText(this.srcTitle, `${rt.sourceLabel(s)} · source ${s}`);
    this.srcLabel.draw(rt, s);
    const levels = this.levels.selected();
    const found = rt.destinationsOf(s, levels);
    if (!found.length) {
      setText(this.srcFeeds, `Feeds no destination on ${levels.join(", ")}.`);
      return;
    }
    const words = found.slice(0, MAX_LISTED).map(({ destination, levels: on }) => (
      on.length === levels.length ? rt.destinationLabel(destination)
        : `${rt.destinationLabel(destination)} (${on.join(", ")})`));
    const more = found.length > MAX_LISTED ? `, and ${found.length - MAX_LISTED} more` : "";
    setText(this.srcFeeds, `Feeds ${found.length}: ${words.join(", ")}${more}.`);
  }

  _drawHint(rt, d, s) {
    let text = "";
    if (this.perms.why("route", rt.id)) {
      text = "";
    } else if (d !== null && s !== null && this.take.preselected) {
      text = `Preselected: ${rt.sourceLabel(s)} → ${rt.destinationLabel(d)}. Take (Enter) or Clear (Esc).`;
    } else if (d !== null && s !== null && !this.take.pendingOn(d)
        && this.levels.selected().some((level) => rt.source(level, d) !== s)) {
      text = `${rt.sourceLabel(s)} → ${rt.destinationLabel(d)}: Enter takes it.`;
    }
    setText(this.hint, text);
    this.hint.dataset.preselect = this.take.preselected ? "yes" : "no";
  }
}
