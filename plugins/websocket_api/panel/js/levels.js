// The level selector: "All levels" by default; choosing some levels makes the next takes
// (and protects, locks, releases) breakaways on those levels only. Also the words for a
// destination's sources per level, and its breakaway marker.

import { h, replace } from "./dom.js";

export class LevelSelector extends EventTarget {
  constructor(container) {
    super();
    this.container = container;
    this.levels = []; // the panel's levels
    this.chosen = null; // null: all; else a Set of level names
  }

  /** The panel's levels (a new panel starts on "All levels", unless `chosen` is kept). */
  setLevels(levels, chosen = null) {
    this.levels = [...levels];
    this.chosen = chosen ? new Set([...chosen].filter((l) => this.levels.includes(l))) : null;
    if (this.chosen && !this.chosen.size) this.chosen = null;
    this.draw();
    this._changed();
  }

  /** The levels takes act on, in the panel's order. */
  selected() {
    return this.chosen ? this.levels.filter((l) => this.chosen.has(l)) : [...this.levels];
  }

  /** Whether a subset of the panel's levels is chosen (a breakaway take). */
  get breakaway() {
    return this.chosen !== null;
  }

  /** Back to all levels. */
  all() {
    this.chosen = null;
    this.draw();
    this._changed();
  }

  /** Toggle one level (from "All levels": that level alone). */
  toggle(level) {
    if (this.chosen === null) this.chosen = new Set([level]);
    else if (this.chosen.has(level)) this.chosen.delete(level);
    else this.chosen.add(level);
    if (this.chosen.size === 0 || this.chosen.size === this.levels.length) this.chosen = null;
    this.draw();
    this._changed();
  }

  _changed() {
    this.dispatchEvent(new CustomEvent("change"));
  }

  draw() {
    const buttons = [h("button", {
      type: "button", class: "level level-all", aria: { pressed: String(this.chosen === null) },
      title: "Take on every level", onclick: () => this.all(),
    }, "All levels")];
    if (this.levels.length > 1) {
      for (const level of this.levels) {
        const on = this.chosen !== null && this.chosen.has(level);
        buttons.push(h("button", {
          type: "button", class: "level", aria: { pressed: String(on) }, dataset: { level },
          title: on ? `Breakaway: takes include ${level}` : `Breakaway: take on ${level} only`,
          onclick: () => this.toggle(level),
        }, level));
      }
    }
    if (this.chosen !== null) {
      buttons.push(h("span", { class: "badge brk", title: "Takes act on the chosen levels only" },
        "Breakaway"));
    }
    replace(this.container, buttons);
    this.container.dataset.breakaway = this.chosen !== null ? "yes" : "no";
  }
}

/**
 * A destination's sources on `levels` in words: one label when every level carries the same
 * source ("CAM 1"), else each level's ("video CAM 1 · audio CAM 2").
 * @returns {{text: string, breakaway: boolean, parts: {level: string, label: string}[]}}
 */
export function describeSources(rt, destination, levels) {
  const parts = levels.map((level) => {
    const s = rt.source(level, destination);
    return { level, source: s, label: s ? rt.sourceLabel(s) : "?" };
  });
  const breakaway = parts.some((p) => p.source !== parts[0].source);
  const text = breakaway ? parts.map((p) => `${p.level} ${p.label}`).join(" · ")
    : (parts.length ? parts[0].label : "");
  return { text, breakaway, parts };
}
