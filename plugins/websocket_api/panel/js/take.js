// Taking routes: the selected destination, the source cursor or preselection, the takes in
// flight and the refusals, and the `route` requests themselves.
//
// A take is shown as pending (never as made) until the API answers; the crosspoints the
// router confirmed go to the tally, which alone says what is routed. A refusal is kept with
// its destination and shown there, in the API's own words, until the next take on it or a
// Clear. With a two-step panel a source click preselects (the preselection flashes) and Take
// (or Enter) sends it; otherwise a source click takes at once.

export class Take extends EventTarget {
  /**
   * @param {object} deps
   * @param {import("./connection.js").Connection} deps.conn
   * @param {import("./model.js").Tally} deps.tally
   * @param {import("./permissions.js").Permissions} deps.perms
   * @param {() => string[]|null} deps.levels the levels a take acts on (null: all the panel's)
   */
  constructor({ conn, tally, perms, levels }) {
    super();
    this.conn = conn;
    this.tally = tally;
    this.perms = perms;
    this.levels = levels;
    this.panel = null;
    this.destination = null; // selected destination
    this.source = null; // source cursor (keyboard) or preselection (two-step)
    this.preselected = false; // whether `source` is a preselection waiting for Take
    this.pending = new Map(); // "router#destination" -> {source, levels}
    this.errors = new Map(); // "router#destination" -> {message, code}
  }

  /** The take in flight on `destination` of this panel's router, or undefined. */
  pendingOn(destination) { return this.pending.get(`${this.router}#${destination}`); }

  /** The refusal shown on `destination` of this panel's router, or undefined. */
  errorOn(destination) { return this.errors.get(`${this.router}#${destination}`); }

  get router() { return this.panel ? this.panel.router : null; }
  get twoStep() { return Boolean(this.panel && this.panel.two_step_take); }

  /** A new panel: selections go, takes in flight keep their answers. */
  setPanel(panel) {
    this.panel = panel;
    this.destination = null;
    this.source = null;
    this.preselected = false;
    this._changed();
  }

  _changed(kind = "selection") {
    this.dispatchEvent(new CustomEvent("change", { detail: { kind } }));
  }

  selectDestination(destination) {
    if (this.destination !== destination) {
      this.destination = destination;
      if (this.preselected) {
        this.source = null;
        this.preselected = false;
      }
    }
    this._changed();
  }

  /** Move the source cursor (arrows) without taking. In a two-step panel it preselects. */
  pointSource(source) {
    this.source = source;
    this.preselected = this.twoStep && this.destination !== null;
    this._changed();
  }

  /** A source button pressed: take now, or preselect in a two-step panel. */
  pressSource(source) {
    this.source = source;
    if (this.destination === null) {
      this.preselected = false;
      this._changed();
      return { taken: false, why: "Choose a destination first, then a source." };
    }
    if (this.twoStep) {
      this.preselected = true;
      this._changed();
      return { taken: false };
    }
    this.preselected = false;
    this.route(this.destination, source);
    return { taken: true };
  }

  /** A crosspoint pressed (XY grid): take now, or preselect in a two-step panel. */
  pressCrosspoint(destination, source) {
    this.destination = destination;
    return this.pressSource(source);
  }

  /** Why Take cannot be used now, or null. */
  whyNotTake() {
    const why = this.perms.why("route", this.router);
    if (why) return why;
    if (this.destination === null) return "Choose a destination first.";
    if (this.source === null) return "Choose a source for it first.";
    return null;
  }

  /** Take the preselection (or the source cursor). */
  take() {
    if (this.whyNotTake()) return false;
    this.preselected = false;
    this.route(this.destination, this.source);
    return true;
  }

  /** Esc / Clear: drop the preselection and cursor, then the refusals, then the destination. */
  clear() {
    if (this.source !== null || this.preselected) {
      this.source = null;
      this.preselected = false;
    } else if (this.errors.size) {
      this.errors.clear();
    } else {
      this.destination = null;
    }
    this._changed();
  }

  /** The level names a take sends: null (every level of the router) or a list. */
  requestLevels() {
    const chosen = this.levels();
    const rt = this.tally.router(this.router);
    if (!chosen || !rt) return null;
    if (chosen.length === rt.levels.length) return null;
    return chosen;
  }

  /** Send `route` and follow it to its answer. */
  async route(destination, source) {
    const router = this.router;
    const why = this.perms.why("route", router);
    const key = `${router}#${destination}`;
    if (why) {
      this.errors.set(key, { message: why, code: "forbidden" });
      this._changed("error");
      return;
    }
    const levels = this.requestLevels();
    const fields = { router, destination, source };
    if (levels) fields.levels = levels;
    const ticket = { source, levels };
    this.pending.set(key, ticket);
    this.errors.delete(key);
    this._changed("pending");
    try {
      const result = await this.conn.request("route", fields);
      this.tally.applyCrosspoints(router, result.crosspoints || []);
    } catch (error) {
      if (this.pending.get(key) === ticket) {
        this.errors.set(key, { message: error.message, code: error.code || "error" });
      }
    } finally {
      if (this.pending.get(key) === ticket) this.pending.delete(key);
      this._changed("answer");
    }
  }
}
