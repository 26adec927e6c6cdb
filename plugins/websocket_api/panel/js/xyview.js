// The XY grid, for small routers (the default up to 64x64): sources across, destinations
// down, one button per crosspoint. A filled dot is a crosspoint made on every chosen level,
// a half dot one made on some of them. Pressing a crosspoint takes it (or preselects it on a
// two-step panel). The destination headers carry the same information as the bus view's
// rows: source per level, BRK, protects and locks, a take in flight, a refusal.

import { h, replace, setAttr, setText } from "./dom.js";
import { destinationState, protectBadge, protectTitle } from "./badges.js";
import { PortPicker } from "./busview.js";
import { gate } from "./permissions.js";

export class XYView {
  /** @param {object} ctx {tally, take, levels, perms, panel, notify} */
  constructor(ctx, container) {
    this.ctx = ctx;
    this.container = container;
    this.rt = ctx.tally.router(ctx.panel.router);
    this.destPicker = new PortPicker({ title: "Destinations", kind: "destination",
      groups: ctx.panel.destinations, onChange: () => this.build() });
    this.srcPicker = new PortPicker({ title: "Sources", kind: "source",
      groups: ctx.panel.sources, onChange: () => this.build() });
    this.scroller = h("div", { class: "xy-scroll" });
    replace(container, h("div", { class: "xy" },
      h("div", { class: "xy-filters" },
        h("div", { class: "xy-filter" }, this.destPicker.head, this.destPicker.tabs),
        h("div", { class: "xy-filter" }, this.srcPicker.head, this.srcPicker.tabs)),
      this.scroller));
    this.build();
  }

  destroy() {}

  filterInput(kind) {
    return kind === "source" ? this.srcPicker.input : this.destPicker.input;
  }

  destinationOrder() { return this.destPorts; }

  sourceOrder() { return this.srcPorts; }

  /** Make the grid for the current filters and groups. */
  build() {
    const rt = this.rt;
    this.destPorts = this.destPicker.ports((d) => rt.destinationLabel(d), rt.destinations);
    this.srcPorts = this.srcPicker.ports((s) => rt.sourceLabel(s), rt.sources);
    const grid = h("div", { class: "xy-grid", role: "grid",
      aria: { label: `Crosspoints of ${rt.id}`, rowcount: this.destPorts.length + 1,
        colcount: this.srcPorts.length + 1 } });
    grid.style.setProperty("--sources", String(this.srcPorts.length));
    this.srcHeads = new Map();
    this.rows = new Map();
    const headRow = h("div", { class: "xy-row xy-headrow", role: "row" },
      h("div", { class: "xy-corner", role: "columnheader" },
        h("span", { class: "xy-corner-d" }, "Destination ↓"), h("span", { class: "xy-corner-s" }, "Source →")));
    for (const s of this.srcPorts) {
      const feeds = h("span", { class: "feeds" });
      const head = h("button", {
        type: "button", class: "xy-src", role: "columnheader", dataset: { port: String(s) },
        onclick: () => this.ctx.take.pointSource(s),
      }, h("span", { class: "xy-src-label" }, h("span", { class: "num" }, s), " ", rt.sourceLabel(s)), feeds);
      head._feeds = feeds;
      this.srcHeads.set(s, head);
      headRow.append(head);
    }
    grid.append(headRow);
    for (const d of this.destPorts) {
      const label = h("span", { class: "label" }, rt.destinationLabel(d));
      const badges = h("span", { class: "badges" });
      const line = h("span", { class: "line2" });
      const head = h("button", {
        type: "button", class: "xy-dest", role: "rowheader", dataset: { port: String(d) },
        onclick: () => this.ctx.take.selectDestination(d),
      }, h("span", { class: "line1" }, h("span", { class: "num" }, d), label, badges), line);
      head._parts = { badges, line };
      const cells = [];
      const row = h("div", { class: "xy-row", role: "row" }, head);
      for (const s of this.srcPorts) {
        const cell = h("button", {
          type: "button", class: "xy-cell", role: "gridcell", dataset: { d: String(d), s: String(s) },
          aria: { label: `${rt.sourceLabel(s)} to ${rt.destinationLabel(d)}`, pressed: "false" },
          onclick: () => {
            const { why } = this.ctx.take.pressCrosspoint(d, s);
            if (why) this.ctx.notify(why, "info");
          },
          oninspect: () => {
            this.ctx.take.selectDestination(d);
            this.ctx.take.pointSource(s);
          },
        });
        cells.push(cell);
        row.append(cell);
      }
      this.rows.set(d, { head, cells });
      grid.append(row);
    }
    replace(this.scroller, grid);
    this.update();
  }

  reveal(destination, focus = true) {
    const row = this.rows.get(destination);
    if (!row) return;
    row.head.scrollIntoView({ block: "nearest", inline: "nearest" });
    if (focus) row.head.focus();
  }

  revealSource(source, focus = true) {
    const d = this.ctx.take.destination;
    const row = d !== null ? this.rows.get(d) : null;
    const index = this.srcPorts.indexOf(source);
    const target = row && index >= 0 ? row.cells[index] : this.srcHeads.get(source);
    if (!target) return;
    target.scrollIntoView({ block: "nearest", inline: "nearest" });
    if (focus) target.focus();
  }

  /** Redraw what changed: `changes` from the tally (null: everything). */
  update(changes = null) {
    if (changes && changes.labels) {
      this.build();
      return;
    }
    const { ctx, rt } = this;
    const levels = ctx.levels.selected();
    const take = ctx.take;
    const why = ctx.perms.why("route", rt.id);
    for (const s of this.srcPorts) {
      const head = this.srcHeads.get(s);
      const count = levels.length ? rt.feedCount(levels[0], s) : 0;
      setText(head._feeds, count ? `→${count}` : "");
      setAttr(head, "aria-pressed", String(take.source === s));
      setAttr(head, "title", `${rt.sourceLabel(s)}: ${levels.map((l) => `${l} feeds ${rt.feedCount(l, s)}`).join(", ")}`);
    }
    for (const d of this.destPorts) {
      if (changes && !changes.destinations.has(d) && !changes.all) continue;
      this._drawRow(d, levels, why);
    }
  }

  _drawRow(d, levels, why) {
    const { ctx, rt } = this;
    const take = ctx.take;
    const { head, cells } = this.rows.get(d);
    const st = destinationState(ctx, rt, d);
    setAttr(head, "aria-pressed", String(take.destination === d));
    head.dataset.state = st.error ? "error" : st.pending ? "pending" : "idle";
    const badges = [];
    if (st.breakaway) badges.push(h("span", { class: "badge brk", title: "Breakaway: its levels carry different sources" }, "BRK"));
    for (const pr of st.protects) {
      badges.push(h("span", { class: `badge ${pr.kind}`, title: protectTitle(pr) }, protectBadge(pr, ctx.panel.levels)));
    }
    const key = badges.map((b) => b.textContent).join("|");
    if (head._parts.badges.dataset.key !== key) {
      replace(head._parts.badges, badges);
      head._parts.badges.dataset.key = key;
    }
    setText(head._parts.line, st.error || st.pending || `← ${st.sources}`);
    setAttr(head._parts.line, "title", st.error || null);
    const ticket = take.pendingOn(d);
    const selectedRow = take.destination === d;
    for (let i = 0; i < cells.length; i++) {
      const s = this.srcPorts[i];
      let on = 0;
      for (const l of levels) if (rt.source(l, d) === s) on += 1;
      const cell = cells[i];
      setAttr(cell, "aria-pressed", String(on > 0 && on === levels.length));
      cell.dataset.on = on === 0 ? "no" : on === levels.length ? "all" : "some";
      cell.dataset.preselect = selectedRow && take.preselected && take.source === s ? "yes" : "no";
      cell.dataset.cursor = selectedRow && !take.preselected && take.source === s ? "yes" : "no";
      cell.dataset.pending = ticket && ticket.source === s ? "yes" : "no";
      cell.dataset.selected = selectedRow || take.source === s ? "yes" : "no";
      gate(cell, why);
    }
  }
}
