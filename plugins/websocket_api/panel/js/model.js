// The tally: every router's state as the API last told it, from the subscription's snapshot
// and the events after it. Numbers are 1-based and levels named, as in the API.
//
// What the panel shows as routed comes only from here, and only the API writes here (a
// snapshot, an event, or the crosspoints a `route` response confirmed): a take the router has
// not confirmed is never shown as made.
//
// Sized for a 4096x4096 router on 16 levels: the crosspoints of a level are one Int32Array
// (0: unknown) and the reverse tally keeps, per level, how many destinations each source feeds
// (an Int32Array), updated in O(1) per changed crosspoint; the destinations of one source are
// found by a scan when asked (65,536 reads at that size). Changes are gathered and announced
// once per animation frame ("change"), so a 1,000-crosspoint event costs the views one redraw
// of their visible rows.

/** One router. */
export class RouterTally {
  constructor(data) {
    this.id = data.id;
    this.driver = data.driver;
    this.online = Boolean(data.online);
    this.offlineReason = null;
    this.levels = [...data.levels];
    this.sources = data.sources;
    this.destinations = data.destinations;
    this.sourceLabels = [...data.labels.sources];
    this.destinationLabels = [...data.labels.destinations];
    this.xp = new Map(); // level -> Int32Array(destinations + 1): source, 0 unknown
    this.feeds = new Map(); // level -> Int32Array(sources + 1): destinations each source feeds
    for (const level of this.levels) {
      const column = new Int32Array(this.destinations + 1);
      const feeds = new Int32Array(this.sources + 1);
      const given = data.crosspoints[level] || [];
      for (let d = 0; d < this.destinations; d++) {
        const s = given[d] || 0;
        column[d + 1] = s;
        if (s) feeds[s] += 1;
      }
      this.xp.set(level, column);
      this.feeds.set(level, feeds);
    }
    this.protects = new Map(); // destination -> Map(level -> {kind, owner})
    for (const p of data.protects || []) this._setProtect(p.level, p.destination, p);
  }

  /** The source feeding `destination` on `level` (0: unknown). */
  source(level, destination) {
    const column = this.xp.get(level);
    return column ? column[destination] : 0;
  }

  /** How many destinations `source` feeds on `level`. */
  feedCount(level, source) {
    const feeds = this.feeds.get(level);
    return feeds ? feeds[source] : 0;
  }

  /** The destinations `source` feeds on any of `levels`, each with the levels it feeds:
   * [{destination, levels: [names]}], in destination order. A scan: call it for one source. */
  destinationsOf(source, levels = this.levels) {
    const found = new Map();
    for (const level of levels) {
      const column = this.xp.get(level);
      if (!column) continue;
      for (let d = 1; d <= this.destinations; d++) {
        if (column[d] === source) {
          if (!found.has(d)) found.set(d, []);
          found.get(d).push(level);
        }
      }
    }
    return [...found.entries()].sort((a, b) => a[0] - b[0])
      .map(([destination, lv]) => ({ destination, levels: lv }));
  }

  /** The protects and locks on `destination`: Map(level -> {kind, owner}) (maybe empty). */
  protectsOf(destination) {
    return this.protects.get(destination) || EMPTY;
  }

  sourceLabel(source) {
    return this.sourceLabels[source - 1] || String(source);
  }

  destinationLabel(destination) {
    return this.destinationLabels[destination - 1] || String(destination);
  }

  /** Set one crosspoint; true when it changed. */
  setCrosspoint(level, destination, source) {
    const column = this.xp.get(level);
    if (!column || destination < 1 || destination > this.destinations) return false;
    const s = source || 0;
    const old = column[destination];
    if (old === s) return false;
    const feeds = this.feeds.get(level);
    if (old) feeds[old] -= 1;
    if (s) feeds[s] += 1;
    column[destination] = s;
    return true;
  }

  _setProtect(level, destination, protect) {
    let levels = this.protects.get(destination);
    if (protect) {
      if (!levels) this.protects.set(destination, levels = new Map());
      levels.set(level, { kind: protect.kind, owner: protect.owner });
    } else if (levels) {
      levels.delete(level);
      if (!levels.size) this.protects.delete(destination);
    }
  }
}

const EMPTY = new Map();

/** What changed in one router since the last "change": destinations, sources, flags. */
class Changes {
  constructor() {
    this.destinations = new Set(); // tally or protect changed
    this.sources = new Set(); // reverse tally (feed counts) changed
    this.labels = false;
    this.online = false;
  }
}

/**
 * Every router, plus the salvos. Events: "reset" (a snapshot replaced everything), "change"
 * ({changes: Map(routerId -> Changes), salvos: bool}), at most once per animation frame.
 */
export class Tally extends EventTarget {
  constructor({ schedule = (fn) => requestAnimationFrame(fn) } = {}) {
    super();
    this.routers = new Map();
    this.salvos = [];
    this._schedule = schedule;
    this._pending = new Map();
    this._salvosChanged = false;
    this._scheduled = false;
  }

  /** Replace everything with a snapshot (the `subscribe` result). */
  load(snapshot) {
    this.routers = new Map((snapshot.routers || []).map((r) => [r.id, new RouterTally(r)]));
    this.salvos = (snapshot.salvos || []).map((s) => ({ ...s }));
    this._pending.clear();
    this._salvosChanged = false;
    this.dispatchEvent(new CustomEvent("reset"));
  }

  /** Set the salvos (from a snapshot of no router, after a `salvos` event). */
  setSalvos(salvos) {
    this.salvos = salvos.map((s) => ({ ...s }));
    this._salvosChanged = true;
    this._later();
  }

  router(id) {
    return this.routers.get(id) || null;
  }

  _changes(routerId) {
    let c = this._pending.get(routerId);
    if (!c) this._pending.set(routerId, c = new Changes());
    this._later();
    return c;
  }

  /** Apply crosspoints the router confirmed (an event's, or a route response's). */
  applyCrosspoints(routerId, crosspoints) {
    const rt = this.routers.get(routerId);
    if (!rt) return;
    const changes = this._changes(routerId);
    for (const xp of crosspoints) {
      const old = rt.source(xp.level, xp.destination);
      if (rt.setCrosspoint(xp.level, xp.destination, xp.source)) {
        changes.destinations.add(xp.destination);
        if (old) changes.sources.add(old);
        if (xp.source) changes.sources.add(xp.source);
      }
    }
  }

  /** Apply one server event. Returns true when it was one the tally keeps. */
  apply(event) {
    const rt = this.routers.get(event.router);
    switch (event.event) {
      case "crosspoints":
        this.applyCrosspoints(event.router, event.crosspoints || []);
        return true;
      case "labels": {
        if (!rt) return true;
        const list = event.kind === "source" ? rt.sourceLabels : rt.destinationLabels;
        for (const { index, text } of event.labels || []) list[index - 1] = text || String(index);
        this._changes(event.router).labels = true;
        return true;
      }
      case "protect":
        if (!rt) return true;
        rt._setProtect(event.level, event.destination, event.protect);
        this._changes(event.router).destinations.add(event.destination);
        return true;
      case "device":
        if (!rt) return true;
        rt.online = Boolean(event.online);
        rt.offlineReason = event.online ? null : (event.reason || "offline");
        this._changes(event.router).online = true;
        return true;
      default:
        return false;
    }
  }

  _later() {
    if (this._scheduled) return;
    this._scheduled = true;
    this._schedule(() => this.flush());
  }

  /** Announce what changed since the last announcement (called once per frame). */
  flush() {
    this._scheduled = false;
    if (!this._pending.size && !this._salvosChanged) return;
    const detail = { changes: this._pending, salvos: this._salvosChanged };
    this._pending = new Map();
    this._salvosChanged = false;
    this.dispatchEvent(new CustomEvent("change", { detail }));
  }
}
