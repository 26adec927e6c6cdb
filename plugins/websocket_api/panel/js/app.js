// The panel's entry point: wires the connection, the tally and the views together.
//
// Data flows one way: the connection hands snapshots and events to the tally; the tally
// announces what changed once per animation frame; the views redraw what is in sight.
// Operator actions go out as API requests; their effects come back the same way (a
// confirmed route's crosspoints, the events that every other panel sees too).

import { Connection, isLoopbackHost, pageEndpoint } from "./connection.js";
import { ClusterView } from "./cluster.js";
import { Tally } from "./model.js";
import { Permissions, gate, installReasons } from "./permissions.js";
import { LoginForm } from "./login.js";
import { LevelSelector } from "./levels.js";
import { Take } from "./take.js";
import { PanelSelector, loadPanels } from "./panels.js";
import { BusView } from "./busview.js";
import { XYView } from "./xyview.js";
import { DetailPane } from "./detail.js";
import { SalvoPanel } from "./salvos.js";
import { ConfirmDialog } from "./dialog.js";
import { installKeyboard } from "./keyboard.js";

const $ = (id) => document.getElementById(id);

/** The largest XY grid drawn (one button per crosspoint: 128x128); a panel asking for a
 * larger one gets the bus view, which draws only what is in sight. */
const XY_MAX_CELLS = 128 * 128;

class App {
  constructor() {
    this.conn = new Connection({
      endpoints: [pageEndpoint()],
      anonymous: isLoopbackHost(window.location.hostname),
    });
    this.tally = new Tally();
    this.perms = new Permissions({ conn: this.conn, tally: this.tally });
    this.levels = new LevelSelector($("levels"));
    this.take = new Take({ conn: this.conn, tally: this.tally, perms: this.perms,
      levels: () => this.levels.selected() });
    this.confirm = new ConfirmDialog($("confirm"));
    this.panels = [];
    this.panel = null;
    this.current = null; // the view in use
    this._loading = 0;
    this.cluster = new ClusterView({ conn: this.conn, tally: this.tally, banner: $("banner"),
      members: $("members"), routers: $("routers") });
    this.login = new LoginForm({ conn: this.conn, section: $("login"), form: $("login-form"),
      input: $("login-token"), message: $("login-message"), submit: $("login-submit"),
      main: $("main"), signOut: $("sign-out") });
    this.selector = new PanelSelector($("panel-select"), (panel) => this.usePanel(panel));
    this.detail = new DetailPane({ conn: this.conn, tally: this.tally, perms: this.perms,
      take: this.take, levels: this.levels, confirm: this.confirm, element: $("detail") });
    this.salvos = new SalvoPanel({ conn: this.conn, tally: this.tally, perms: this.perms,
      section: $("salvos"), toggle: $("salvos-toggle") });
    installReasons($("reason"));
    installKeyboard({ take: this.take, view: () => this.current,
      active: () => !$("main").hidden && !this.confirm.dialog.open });
    this._wire();
  }

  _wire() {
    const { conn, tally, take, levels } = this;
    conn.addEventListener("snapshot", (ev) => this.onSnapshot(ev.detail));
    conn.addEventListener("event", (ev) => this.onEvent(ev.detail));
    conn.addEventListener("phase", () => this.redraw());
    tally.addEventListener("change", (ev) => this.onChange(ev.detail));
    take.addEventListener("change", () => this.redraw());
    levels.addEventListener("change", () => this.redraw());
    $("take").addEventListener("click", () => take.take());
    $("clear").addEventListener("click", () => take.clear());
  }

  start() {
    this.conn.start();
  }

  /** A (re)connect: the snapshot replaces everything; the panels are read again. */
  async onSnapshot({ result, reconnected }) {
    this.tally.load(result);
    // draw the new snapshot at once with the panel in use (a failover must not leave the
    // old node's tally on screen while the panels are asked for)
    if (this.panel && this.tally.router(this.panel.router)) {
      this.usePanel(this.panel, { keepSelection: true, keepLevels: true });
    }
    const loading = ++this._loading;
    let found;
    try {
      found = await loadPanels(this.conn, this.tally);
    } catch (error) {
      return; // the connection was lost again: the next snapshot starts over
    }
    if (loading !== this._loading) return;
    this.panels = found.panels;
    if (found.note) console.info(`tieline panel: ${found.note}`); // eslint-disable-line no-console
    const keep = this.panel ? this.panel.name : null;
    const panel = this.selector.setPanels(this.panels, keep);
    const same = panel && this.panel && JSON.stringify(panel) === JSON.stringify(this.panel);
    if (panel && !same) {
      this.usePanel(panel, { keepSelection: reconnected && keep === panel.name });
    } else if (!panel) {
      this.notify("This node has no router to show.", "info");
    }
    this.salvos.draw();
  }

  onEvent(message) {
    if (message.event === "salvos") {
      this.salvos.forget();
      this.conn.request("snapshot", { routers: [] })
        .then((result) => this.tally.setSalvos(result.salvos || []))
        .catch(() => {}); // the next snapshot brings them
      return;
    }
    this.tally.apply(message);
  }

  /** Switch to `panel`: a new view; the levels back to all (unless kept: a reconnect). */
  usePanel(panel, { keepSelection = false, keepLevels = false } = {}) {
    const sameRouter = this.panel && this.panel.router === panel.router;
    const selection = keepSelection && sameRouter
      ? { d: this.take.destination, s: this.take.source } : null;
    const chosen = keepLevels && sameRouter ? this.levels.chosen : null;
    this.panel = panel;
    if (this.current) this.current.destroy();
    this.current = null;
    this.levels.setLevels(panel.levels, chosen);
    this.take.setPanel(panel);
    if (selection) {
      this.take.destination = selection.d;
      this.take.source = selection.s;
    }
    const ctx = { tally: this.tally, take: this.take, levels: this.levels, perms: this.perms,
      panel, notify: (text, kind) => this.notify(text, kind) };
    const cells = new Set(panel.destinations.flatMap((g) => g.ports)).size
      * new Set(panel.sources.flatMap((g) => g.ports)).size;
    const xy = panel.layout === "xy" && cells <= XY_MAX_CELLS;
    if (panel.layout === "xy" && !xy) {
      this.notify(`Panel ${panel.name} asks for an XY grid of ${cells} crosspoints; above `
        + `${XY_MAX_CELLS} the bus view is shown instead.`, "info");
    }
    const View = xy ? XYView : BusView;
    this.current = new View(ctx, $("view"));
    $("view").dataset.layout = xy ? "xy" : "bus";
    $("take").hidden = !panel.two_step_take;
    this.detail.setPanel(panel);
    this.redraw();
    if (!this._usable) {
      // the first routing view on screen: a mark for tests/benchmarks/test_panel_scale.py
      // (navigation start -> painted), taken after the frame that shows it
      this._usable = true;
      requestAnimationFrame(() => setTimeout(() => performance.mark("tieline:first-usable"), 0));
    }
  }

  /** What the tally says changed (once per frame). */
  onChange({ changes, salvos }) {
    const mine = this.panel ? changes.get(this.panel.router) : null;
    if (mine && this.current) this.current.update(mine);
    if (mine || salvos) {
      this.detail.draw();
      this.salvos.draw();
    }
    if (mine && mine.online) this.redraw();
  }

  /** Everything that depends on the selection, the levels, the user or the node's state. */
  redraw() {
    if (this.current) this.current.update(null);
    this.detail.draw();
    this.salvos.draw();
    const router = this.panel ? this.panel.router : null;
    gate($("take"), this.take.whyNotTake());
    $("take").dataset.preselect = this.take.preselected ? "yes" : "no";
    const why = this.conn.connected ? this.perms.why("route", router) : null;
    const mode = $("mode"); // a tap on it says why, as on every control that cannot be used
    mode.hidden = !why;
    gate(mode, why);
    document.body.dataset.readonly = why ? "yes" : "no";
    const user = this.conn.user;
    $("user").textContent = user ? `${user.name} · level ${user.level}` : "";
  }

  notify(text, kind = "info") {
    const notice = $("notice");
    notice.textContent = text;
    notice.dataset.kind = kind;
    notice.hidden = false;
    clearTimeout(this._noticeTimer);
    this._noticeTimer = setTimeout(() => { notice.hidden = true; }, 5000);
  }
}

const app = new App();
window.tielinePanel = app; // for the browser tests and for curious operators: read-only use
app.start();
