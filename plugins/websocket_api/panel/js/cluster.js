// The cluster and connection banner: which node the panel uses and in what state, what the
// connection is doing, every member of the cluster with its state, each router online or
// offline. It also feeds the connection every member's client URL (from the node's cluster
// view, the `status` request), so that a failover can reach them.

import { h, replace, setText } from "./dom.js";

/** How often the cluster view is read while connected. */
const POLL_MS = 2000;

/** The banner's words and tone for the node in use (its `status` object). */
export function describeNode(node, nameOf) {
  const status = node.status || `${node.role} is ${node.state}`;
  const where = `Connected to ${node.node} (${status})`;
  if (node.state === "standby") {
    const active = node.active ? `the active node is ${nameOf(node.active)}`
      : "no active node answers";
    return { text: `${where} — read-only: ${active}`, tone: "standby" };
  }
  if (node.role === "backup") return { text: where, tone: "amber" };
  return { text: where, tone: "ok" };
}

export class ClusterView {
  constructor({ conn, tally, banner, members, routers }) {
    this.conn = conn;
    this.tally = tally;
    this.banner = banner;
    this.membersEl = members;
    this.routersEl = routers;
    this.peers = [];
    this.self = null;
    this._timer = null;
    this._reading = false;
    conn.addEventListener("phase", (ev) => this._phase(ev.detail));
    tally.addEventListener("reset", () => this.drawRouters());
    tally.addEventListener("change", (ev) => {
      for (const changes of ev.detail.changes.values()) {
        if (changes.online) {
          this.drawRouters();
          break;
        }
      }
    });
  }

  _phase(d) {
    const conn = this.conn;
    let text;
    let tone;
    switch (d.phase) {
      case "connecting":
        text = d.trying ? `Connecting to ${d.tryingName}…`
          : `No tieline node answers${d.retryInMs ? ` — trying again in ${(d.retryInMs / 1000).toFixed(1)} s` : ""}`;
        tone = "busy";
        break;
      case "login":
        text = d.node && d.node.node ? `Not signed in — ${d.node.node} (${d.node.status})`
          : "Not signed in";
        tone = "busy";
        this._stop();
        break;
      case "lost": {
        const lost = d.lostName ? ` to ${d.lostName}` : "";
        text = d.trying ? `Connection lost${lost} — trying ${d.tryingName}…`
          : `Connection lost${lost} — no node answers yet${d.retryInMs ? `, trying again in ${(d.retryInMs / 1000).toFixed(1)} s` : ""}`;
        tone = "lost";
        this._stop();
        this.membersEl.classList.add("stale");
        break;
      }
      case "ready": {
        ({ text, tone } = describeNode(d.node || conn.node || {}, (u) => conn.nameOf(u)));
        this.self = { ...(d.node || conn.node), url: d.endpoint };
        this.membersEl.classList.remove("stale");
        this._start();
        break;
      }
      default:
        text = d.phase;
        tone = "busy";
    }
    this.banner.dataset.tone = tone;
    setText(this.banner, text);
    document.body.dataset.connection = d.phase;
    this.drawMembers();
  }

  _start() {
    if (this._timer) return;
    this.read();
    this._timer = setInterval(() => this.read(), POLL_MS);
  }

  _stop() {
    clearInterval(this._timer);
    this._timer = null;
  }

  /** Read the node's cluster view now. */
  async read() {
    if (this._reading || !this.conn.connected) return;
    this._reading = true;
    try {
      const status = await this.conn.request("status");
      this.self = { ...status, url: this.conn.link ? this.conn.link.url : null };
      this.peers = status.peers || [];
      this.conn.learnEndpoints(this.peers.map((p) => ({ url: p.url, node: p.node })));
      if (this.self.url) this.conn.learnEndpoints([{ url: this.self.url, node: status.node }]);
      for (const r of status.routers || []) {
        const rt = this.tally.router(r.id);
        if (rt && rt.online !== r.online) {
          // the device event is on its way; the status answer is as true
          rt.online = r.online;
          this.drawRouters();
        }
      }
      this.drawMembers();
    } catch (error) {
      // the connection says what happened; the next read tries again
    } finally {
      this._reading = false;
    }
  }

  drawMembers() {
    const items = [];
    if (this.self && this.self.node) {
      items.push(this._member(this.self.node, this.self.status, this.self.state, true, true));
    }
    for (const p of this.peers) {
      const name = p.node || p.address;
      const text = p.connected ? (p.status || "state unknown") : "unreachable";
      items.push(this._member(name, text, p.connected ? p.state : "down", false, p.connected,
        p.problem));
    }
    replace(this.membersEl, items);
  }

  _member(name, status, state, inUse, reachable, problem = null) {
    return h("li", {
      class: "member", dataset: { state: state || "unknown", inUse: inUse ? "yes" : "no" },
      title: problem || (inUse ? "The panel uses this node" : null),
      aria: inUse ? { current: "true" } : {},
    }, h("span", { class: "dot", aria: { hidden: "true" } }),
    h("span", { class: "member-name" }, name),
    " ", h("span", { class: "member-status" }, reachable ? status : "unreachable"),
    inUse ? h("span", { class: "sr-only" }, " (in use)") : null);
  }

  drawRouters() {
    const items = [];
    for (const rt of this.tally.routers.values()) {
      items.push(h("li", {
        class: "router-state", dataset: { online: rt.online ? "yes" : "no" },
        title: rt.online ? null : (rt.offlineReason || "offline"),
      }, h("span", { class: "dot", aria: { hidden: "true" } }), rt.id, " ",
      h("span", { class: "router-online" }, rt.online ? "online" : "offline")));
    }
    replace(this.routersEl, items);
  }
}
