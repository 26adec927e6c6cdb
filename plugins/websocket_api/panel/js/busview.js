// The bus view, for routers of any size: a destination list on the left, source buttons on
// the right. Pick a destination, then a source. Both sides are virtualised (only the rows in
// view exist) and filtered by label or by a range such as "1-10,17"; panel groups are tabs.
//
// Each destination row shows its source on the chosen levels (each level's when they
// differ), the BRK marker, protects and locks with their owners, a take in flight, and a
// refusal. Each source button shows how many destinations it feeds (reverse tally) and
// whether it feeds the selected destination (pressed: on every chosen level; half: on some).

import { h, replace, setAttr, setText } from "./dom.js";
import { destinationState, protectBadge, protectTitle } from "./badges.js";
import { filterPorts } from "./ranges.js";
import { gate } from "./permissions.js";
import { VirtualList } from "./virtual.js";

const DEST_ROW = 60;
const SRC_ROW = 52;
const SRC_MIN_WIDTH = 128;

/** Filter inputs and group tabs above one side's list. */
export class PortPicker {
  constructor({ title, kind, groups, onChange }) {
    this.kind = kind;
    // several groups: an "All" tab first, every group's ports in the panel's order
    if (groups.length > 1 && !groups.some((g) => g.name === "All")) {
      const all = [...new Set(groups.flatMap((g) => g.ports))];
      this.groups = [{ name: "All", ports: all, colour: null }, ...groups];
    } else {
      this.groups = groups;
    }
    this.group = 0;
    this.onChange = onChange;
    this.input = h("input", {
      type: "search", class: "filter", placeholder: "Label or 1-10,17",
      aria: { label: `Filter ${kind}s by label or numbers` }, autocomplete: "off",
      spellcheck: "false", dataset: { filter: kind },
      oninput: () => this.onChange(),
      onkeydown: (ev) => {
        if (ev.key === "Escape" && this.input.value) {
          ev.stopPropagation();
          this.input.value = "";
          this.onChange();
        }
      },
    });
    this.tabs = h("div", { class: "groups", role: "group", aria: { label: `${title} groups` } });
    this.head = h("div", { class: "list-head" }, h("h2", {}, title), this.input);
    this.drawTabs();
  }

  drawTabs() {
    this.tabs.hidden = this.groups.length < 2;
    replace(this.tabs, this.groups.map((g, i) => {
      const tab = h("button", {
        type: "button", class: "group", aria: { pressed: String(i === this.group) },
        onclick: () => {
          this.group = i;
          this.drawTabs();
          this.onChange();
        },
      }, g.name);
      if (g.colour) tab.style.setProperty("--group", g.colour);
      return tab;
    }));
  }

  /** The ports shown: the current group's, filtered. */
  ports(labelOf, max) {
    const group = this.groups[this.group] || this.groups[0];
    return filterPorts(group.ports, this.input.value, labelOf, max);
  }
}

/** A map port -> colour, for the groups that have one (first group wins). */
function colours(groups) {
  const map = new Map();
  for (const g of groups) {
    if (!g.colour) continue;
    for (const p of g.ports) if (!map.has(p)) map.set(p, g.colour);
  }
  return map;
}

export class BusView {
  /** @param {object} ctx {tally, take, levels, perms, panel, notify} */
  constructor(ctx, container) {
    this.ctx = ctx;
    this.container = container;
    this.rt = ctx.tally.router(ctx.panel.router);
    this.destColours = colours(ctx.panel.destinations);
    this.srcColours = colours(ctx.panel.sources);
    this.destPicker = new PortPicker({ title: "Destinations", kind: "destination",
      groups: ctx.panel.destinations, onChange: () => this.filterDestinations() });
    this.srcPicker = new PortPicker({ title: "Sources", kind: "source",
      groups: ctx.panel.sources, onChange: () => this.filterSources() });
    this.destViewport = h("div", { class: "vlist dest-list", role: "group",
      aria: { label: "Destinations" } });
    this.srcViewport = h("div", { class: "vlist src-grid", role: "group",
      aria: { label: "Sources" } });
    this.columns = 1;
    this.destPorts = [];
    this.srcPorts = [];
    replace(container, h("div", { class: "bus" },
      h("section", { class: "side dests", aria: { label: "Destinations" } },
        this.destPicker.head, this.destPicker.tabs, this.destViewport),
      h("section", { class: "side srcs", aria: { label: "Sources" } },
        this.srcPicker.head, this.srcPicker.tabs, this.srcViewport)));
    this.destList = new VirtualList(this.destViewport, {
      rowHeight: DEST_ROW, create: () => this._destRow(), render: (row, d) => this._drawDest(row, d),
    });
    this.srcList = new VirtualList(this.srcViewport, {
      rowHeight: SRC_ROW, create: () => h("div", { class: "src-row" }),
      render: (row, ports) => this._drawSourceRow(row, ports),
    });
    this._resize = new ResizeObserver(() => this._fitColumns());
    this._resize.observe(this.srcViewport);
    this.filterDestinations();
    this.filterSources();
  }

  destroy() {
    this._resize.disconnect();
    this.destList._resize.disconnect();
    this.srcList._resize.disconnect();
  }

  /** The filter input of `kind` ("destination" or "source"), for type-to-search. */
  filterInput(kind) {
    return kind === "source" ? this.srcPicker.input : this.destPicker.input;
  }

  /** The destinations in view order (after group and filter). */
  destinationOrder() { return this.destPorts; }

  /** The sources in view order (after group and filter). */
  sourceOrder() { return this.srcPorts; }

  filterDestinations() {
    const rt = this.rt;
    this.destPorts = this.destPicker.ports((d) => rt.destinationLabel(d), rt.destinations);
    this.destList.setItems(this.destPorts);
  }

  filterSources() {
    const rt = this.rt;
    this.srcPorts = this.srcPicker.ports((s) => rt.sourceLabel(s), rt.sources);
    this._layoutSources();
  }

  _fitColumns() {
    const width = this.srcViewport.clientWidth;
    const columns = Math.max(1, Math.floor(width / SRC_MIN_WIDTH));
    if (columns !== this.columns) {
      this.columns = columns;
      this._layoutSources();
    }
  }

  _layoutSources() {
    const rows = [];
    for (let i = 0; i < this.srcPorts.length; i += this.columns) {
      rows.push(this.srcPorts.slice(i, i + this.columns));
    }
    this.srcViewport.style.setProperty("--columns", String(this.columns));
    this.srcList.setItems(rows);
  }

  /** Show `destination` (scroll to it) and give it the focus. */
  reveal(destination, focus = true) {
    const index = this.destPorts.indexOf(destination);
    if (index < 0) return;
    this.destList.scrollToIndex(index);
    const row = this.destList.rowAt(index);
    if (row && focus) row.focus();
  }

  /** Show `source` and give it the focus. */
  revealSource(source, focus = true) {
    const index = this.srcPorts.indexOf(source);
    if (index < 0) return;
    const rowIndex = Math.floor(index / this.columns);
    this.srcList.scrollToIndex(rowIndex);
    const row = this.srcList.rowAt(rowIndex);
    if (row && focus) {
      const button = row.children[index % this.columns];
      if (button) button.focus();
    }
  }

  /** Redraw what changed: `changes` from the tally (null: everything in view). */
  update(changes = null) {
    if (changes && changes.labels) {
      this.filterDestinations();
      this.filterSources();
      return;
    }
    this.destList.refresh(changes ? changes.destinations : null);
    this.srcList.refresh(null);
  }

  // -- destinations ---------------------------------------------------------------------

  _destRow() {
    const num = h("span", { class: "num" });
    const label = h("span", { class: "label" });
    const badges = h("span", { class: "badges" });
    const line = h("span", { class: "line2" });
    const row = h("button", {
      type: "button", class: "dest", aria: { pressed: "false" },
      onclick: () => this.ctx.take.selectDestination(Number(row.dataset.port)),
    }, h("span", { class: "line1" }, num, label, badges), line);
    row._parts = { num, label, badges, line };
    return row;
  }

  _drawDest(row, d) {
    const { ctx, rt } = this;
    const p = row._parts;
    const st = destinationState(ctx, rt, d);
    row.dataset.port = String(d);
    setText(p.num, d);
    setText(p.label, rt.destinationLabel(d));
    setAttr(row, "aria-pressed", String(ctx.take.destination === d));
    const colour = this.destColours.get(d);
    if (colour) row.style.setProperty("--group", colour);
    else row.style.removeProperty("--group");
    const badges = [];
    if (st.breakaway) badges.push(h("span", { class: "badge brk", title: "Breakaway: its levels carry different sources" }, "BRK"));
    for (const pr of st.protects) {
      badges.push(h("span", { class: `badge ${pr.kind}`, title: protectTitle(pr) },
        protectBadge(pr, ctx.panel.levels)));
    }
    const key = badges.map((b) => b.textContent).join("|");
    if (p.badges.dataset.key !== key) {
      replace(p.badges, badges);
      p.badges.dataset.key = key;
    }
    row.dataset.state = st.error ? "error" : st.pending ? "pending" : "idle";
    setText(p.line, st.error || st.pending || `← ${st.sources}`);
    setAttr(p.line, "title", st.error || null);
    setAttr(row, "aria-label", `${d} ${rt.destinationLabel(d)}: ${st.error ? `refused: ${st.error}` : st.pending || `from ${st.sources}`}${st.breakaway ? ", breakaway" : ""}${st.protects.map((pr) => `, ${protectTitle(pr)}`).join("")}`);
  }

  // -- sources --------------------------------------------------------------------------

  _drawSourceRow(row, ports) {
    while (row.children.length < ports.length) row.append(this._sourceButton());
    for (let i = 0; i < row.children.length; i++) {
      const button = row.children[i];
      if (i < ports.length) {
        button.hidden = false;
        this._drawSource(button, ports[i]);
      } else {
        button.hidden = true;
      }
    }
  }

  _sourceButton() {
    const num = h("span", { class: "num" });
    const label = h("span", { class: "label" });
    const feeds = h("span", { class: "feeds" });
    const button = h("button", {
      type: "button", class: "src", aria: { pressed: "false" },
      onclick: () => {
        const { why } = this.ctx.take.pressSource(Number(button.dataset.port));
        if (why) this.ctx.notify(why, "info");
      },
      oninspect: () => this.ctx.take.pointSource(Number(button.dataset.port)),
    }, num, label, feeds);
    button._parts = { num, label, feeds };
    return button;
  }

  _drawSource(button, s) {
    const { ctx, rt } = this;
    const take = ctx.take;
    const p = button._parts;
    const levels = ctx.levels.selected();
    button.dataset.port = String(s);
    setText(p.num, s);
    setText(p.label, rt.sourceLabel(s));
    setAttr(p.label, "title", rt.sourceLabel(s));
    const counts = levels.map((l) => rt.feedCount(l, s));
    setText(p.feeds, counts[0] ? `→${counts[0]}` : "");
    setAttr(p.feeds, "title", levels.map((l, i) => `${l}: feeds ${counts[i]}`).join(", "));
    let on = 0;
    const d = take.destination;
    if (d !== null) for (const l of levels) if (rt.source(l, d) === s) on += 1;
    setAttr(button, "aria-pressed", String(on > 0 && on === levels.length));
    button.dataset.partial = on > 0 && on < levels.length ? "yes" : "no";
    button.dataset.cursor = take.source === s && !take.preselected ? "yes" : "no";
    button.dataset.preselect = take.source === s && take.preselected ? "yes" : "no";
    const ticket = d !== null ? take.pendingOn(d) : null;
    button.dataset.pending = ticket && ticket.source === s ? "yes" : "no";
    const colour = this.srcColours.get(s);
    if (colour) button.style.setProperty("--group", colour);
    else button.style.removeProperty("--group");
    gate(button, ctx.perms.why("route", rt.id));
    setAttr(button, "aria-label", `${s} ${rt.sourceLabel(s)}${counts[0] ? `, feeds ${counts[0]}` : ""}`);
  }
}
