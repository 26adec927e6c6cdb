// Protect and lock a destination on the chosen levels, release one's own, and (permission
// level 3) force the release of someone else's after a confirmation. Each answer is shown in
// place: a refusal in the API's words (with the owner), success by the protect event that
// follows (the badges change for everyone).

import { h, setText } from "./dom.js";
import { gate } from "./permissions.js";

export class ProtectControls {
  /**
   * @param {object} deps {conn, perms, levels (LevelSelector), confirm (ConfirmDialog)}
   */
  constructor({ conn, perms, levels, confirm }) {
    this.conn = conn;
    this.perms = perms;
    this.levels = levels;
    this.confirm = confirm;
    this.target = null; // {router, destination}
    this.rt = null;
    this.busy = false;
    this.plan = {}; // what each button would do now: levels
    const button = (cls, onclick) => h("button", { type: "button", class: cls, onclick });
    this.protectButton = button("secondary", () => this._send("protect", this.plan.chosen));
    this.lockButton = button("secondary", () => this._send("lock", this.plan.chosen));
    this.releaseButton = button("secondary", () => this._send("release", this.plan.mine));
    this.forceButton = button("danger", () => this._force(this.plan.others));
    this.message = h("p", { class: "inline-message", role: "status", aria: { live: "polite" } });
    this.element = h("div", { class: "protect" },
      h("div", { class: "actions", role: "group", aria: { label: "Protect and lock" } },
        this.protectButton, this.lockButton, this.releaseButton, this.forceButton),
      this.message);
  }

  /** Draw the controls for `destination` of router `rt` (the same elements every time, so
   * a redraw between press and release never loses a tap). */
  draw(rt, destination) {
    const same = this.target && this.target.router === rt.id && this.target.destination === destination;
    if (!same) {
      this.target = { router: rt.id, destination };
      this.message.textContent = "";
      this.message.dataset.kind = "";
    }
    this.rt = rt;
    const me = this.conn.user ? this.conn.user.name : null;
    const chosen = this.levels.selected();
    const held = rt.protectsOf(destination);
    const mine = chosen.filter((l) => held.has(l) && held.get(l).owner === me);
    const others = chosen.filter((l) => held.has(l) && held.get(l).owner !== me);
    const allMine = (kind) => chosen.every((l) => held.has(l) && held.get(l).owner === me
      && held.get(l).kind === kind);
    this.plan = { chosen, mine, others };
    const busy = this.busy ? "Waiting for the answer to the last request." : null;
    const on = chosen.length === rt.levels.length ? "" : ` on ${chosen.join(", ")}`;
    setText(this.protectButton, `Protect${on}`);
    gate(this.protectButton, this.perms.why("protect", rt.id) || busy
      || (allMine("protect") ? "Already protected by you on these levels." : null));
    setText(this.lockButton, `Lock${on}`);
    gate(this.lockButton, this.perms.why("lock", rt.id) || busy
      || (allMine("lock") ? "Already locked by you on these levels." : null));
    setText(this.releaseButton, "Release");
    gate(this.releaseButton, this.perms.why("release", rt.id) || busy
      || (mine.length ? null : "Nothing of yours to release on these levels."));
    setText(this.forceButton, "Force release");
    gate(this.forceButton, this.perms.why("force", rt.id) || busy
      || (others.length ? null : "No one else's protect or lock on these levels."));
  }

  async _force(levels) {
    const { rt } = this;
    const { destination } = this.target;
    const held = rt.protectsOf(destination);
    const owners = [...new Set(levels.map((l) => `${held.get(l).kind} of ${held.get(l).owner}`))];
    const ok = await this.confirm.ask(
      `Force the release of the ${owners.join(" and ")} on ${rt.destinationLabel(destination)} `
      + `(${levels.join(", ")})? Anyone may then route it; they are not asked.`,
      "Force release");
    if (ok) this._send("release", levels, true);
  }

  async _send(kind, levels, force = false) {
    const { rt } = this;
    const { destination } = this.target;
    const fields = { router: rt.id, destination };
    if (levels.length !== rt.levels.length) fields.levels = levels;
    if (force) fields.force = true;
    const verb = { protect: "Protecting", lock: "Locking", release: force ? "Forcing the release" : "Releasing" }[kind];
    this.busy = true;
    this.message.textContent = `${verb}…`;
    this.message.dataset.kind = "info";
    this.draw(rt, destination);
    const target = this.target;
    try {
      await this.conn.request(kind, fields);
      if (this.target === target) {
        this.message.textContent = "";
        this.message.dataset.kind = "";
      }
    } catch (error) {
      if (this.target === target) {
        this.message.textContent = error.message;
        this.message.dataset.kind = "error";
      }
    } finally {
      this.busy = false;
      if (this.target === target) this.draw(rt, destination);
    }
  }
}
