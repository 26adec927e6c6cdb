// The panel's session with a tieline cluster's WebSocket API, moving to another node on failure.
//
// It follows what docs/api.md ("Several nodes: failover") asks of a client, as the Python
// client (core/client.py) does it:
//
// - Connecting: endpoints are tried in order; a node whose greeting says `standby` and names
//   the active node sends us there first; a standby is used (read-only) only when no active
//   node answers.
// - Epochs: the highest epoch any node announced is remembered; a node announcing a lower one
//   was left behind by a failover and is never used.
// - A dead server: no message for the `heartbeat_timeout_ms` of its greeting. The link is then
//   dropped and the next node is looked for: the active node the lost one named, the endpoints
//   after the lost one, the lost one last; passes every 25 ms for about 2 s, then backing off
//   to 2 s, for as long as the page is open (a panel never gives up on its operator).
// - On the new node: hello with the same token, subscribe again (a fresh snapshot replaces
//   the panel's state), then the requests that were waiting.
// - Requests: one whose response arrived is done. One lost with its connection is sent again
//   on the next node only when it is idempotent (every built-in request is), within
//   `retryWindowMs` of the operator's action, and not once three connections died under it:
//   a route made long after it was asked for surprises the operator. A write refused with
//   `standby` is held while the active node is looked for, then sent there.
//
// Authentication: the token lives in sessionStorage (this tab only), is sent in `hello`, and
// never appears in a URL. Without a token, an anonymous hello is tried only when the page
// itself was loaded from a loopback host. A refused token stops everything: no reconnect loop,
// no repeated hello; the login form asks, and each refused attempt waits longer before the
// next one is sent.

export const PROTOCOL = 1;
export const TOKEN_KEY = "tieline.token";

/** Requests that may be sent again after their connection died (doing one twice leaves what
 * doing it once does), as IDEMPOTENT_REQUESTS in core/client.py. */
const IDEMPOTENT = new Set(["ping", "status", "snapshot", "subscribe", "unsubscribe", "panels",
  "route", "salvo", "protect", "lock", "release", "label"]);
/** Requests the server answers without waiting for a router. */
const IMMEDIATE = new Set(["hello", "ping", "status", "snapshot", "subscribe", "unsubscribe",
  "panels"]);
/** A request is not sent again once this many connections died while it waited. */
const MAX_LOST_CONNECTIONS = 3;

/** An error the API answered (`code`, `message`, `field`, and `owner`/`active` when given),
 * or one the panel makes itself for a request that got no answer (`code` "no_answer",
 * "connection_lost", "not_sent"). */
export class ApiError extends Error {
  constructor(payload) {
    super(payload.message || payload.code || "error");
    this.name = "ApiError";
    this.code = payload.code || "error";
    this.field = payload.field ?? null;
    this.owner = payload.owner ?? null;
    this.active = payload.active ?? null;
  }
}

/** The WebSocket URL of the node that served this page: its own host and port. */
export function pageEndpoint(loc = window.location) {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/`;
}

/** Whether a page host is loopback (127.0.0.0/8, ::1, localhost): only there may the panel
 * try anonymous access, which the server grants to loopback clients alone. */
export function isLoopbackHost(hostname) {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** An endpoint URL as a key: lower case, no trailing slash. */
export function endpointKey(url) {
  return String(url).trim().replace(/\/+$/, "").toLowerCase();
}

/** Pauses between passes over the endpoints after a loss: 25 ms for about 2 s (a takeover
 * takes that long at most in the fast timing profile, and a refused connection costs
 * nothing), then doubling from 100 ms to a 2 s cap, each with ±30 % jitter. */
export function* failoverDelays(random = Math.random) {
  const jitter = (ms) => ms * (1 + (random() * 0.6 - 0.3));
  for (let i = 0; i < 80; i++) yield jitter(25);
  let delay = 100;
  for (;;) {
    yield jitter(delay);
    delay = Math.min(delay * 2, 2000);
  }
}

/** How long the login form waits after the n-th refused token (1 s, 2 s, 4 s … 30 s). */
export function loginBackoffMs(failures) {
  return failures <= 0 ? 0 : Math.min(1000 * 2 ** (failures - 1), 30000);
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** One WebSocket to one node, from its greeting to its end. */
class Link {
  constructor(url, ws, greeting) {
    this.url = url;
    this.ws = ws;
    this.greeting = greeting;
    this.node = greeting.node && typeof greeting.node === "object" ? { ...greeting.node } : {};
    this.timeoutMs = Number(greeting.heartbeat_timeout_ms) || 1500;
    this.waiting = new Map(); // id -> {resolve, reject}: the connection's own requests
    this.held = []; // events received before the link was put in use
    this.lastSeen = performance.now();
    this.ended = false;
    this.reason = null;
    this.onEnd = null;
    this.onMessage = null;
    this.refusedActive = null; // `active` of its last standby refusal
  }

  get epoch() { return Number.isInteger(this.node.epoch) ? this.node.epoch : 0; }
  get standby() { return this.node.state === "standby"; }
  get name() { return this.node.node || this.url; }
}

export class AuthRefused extends Error {
  constructor(message, { hadToken }) {
    super(message);
    this.name = "AuthRefused";
    this.hadToken = hadToken;
  }
}

/**
 * The session. Events (a CustomEvent's `detail`):
 * - `phase`: {phase: "connecting" | "login" | "ready" | "lost", endpoint, node, trying,
 *   reason, message, failures}: what the connection is doing, for the banner.
 * - `snapshot`: {result, endpoint, reconnected}: the subscription's snapshot (every
 *   (re)connect).
 * - `event`: a server event message, after the snapshot it applies to.
 * - `status`: the node in use announced a new status ({node}).
 */
export class Connection extends EventTarget {
  constructor({
    endpoints, clientName = "tieline-panel", storage = window.sessionStorage,
    anonymous = false, connectTimeoutMs = 3000, retryWindowMs = 5000,
    requestTimeoutMs = 10000, routerTimeoutMs = 30000, huntIntervalMs = 3000,
  }) {
    super();
    this.endpoints = [...endpoints];
    this.clientName = clientName;
    this.storage = storage;
    this.anonymous = anonymous;
    this.connectTimeoutMs = connectTimeoutMs;
    this.retryWindowMs = retryWindowMs;
    this.requestTimeoutMs = requestTimeoutMs;
    this.routerTimeoutMs = routerTimeoutMs;
    this.huntIntervalMs = huntIntervalMs;
    this.names = new Map(); // endpoint key -> node name, from the cluster view
    this.maxEpoch = 0;
    this.link = null; // the link in use
    this.loginLink = null; // a link kept open while the login form asks for a token
    this.user = null;
    this.node = null;
    this.phase = "idle";
    this.loginFailures = 0;
    this.nextLoginAt = 0;
    this._ids = 1;
    this._calls = new Map(); // id -> call, the operator's requests
    this._seeking = false;
    this._stopped = false;
    this._huntTimer = null;
    this._hunting = false;
    this._watchdog = null;
  }

  // -- public ---------------------------------------------------------------------------

  /** Start connecting (to the page's own node first). */
  start() {
    this._stopped = false;
    this._seek(null, "starting");
  }

  /** Stop and close everything (sign out). */
  stop() {
    this._stopped = true;
    for (const link of [this.link, this.loginLink]) if (link) this._drop(link, "signed out");
    this.link = null;
    this.loginLink = null;
    for (const call of [...this._calls.values()]) {
      this._fail(call, { code: "connection_lost", message: "signed out before the answer" });
    }
    clearTimeout(this._huntTimer);
  }

  get token() { return this.storage.getItem(TOKEN_KEY); }

  /** Whether a node is in use now. */
  get connected() { return this.link !== null && !this.link.ended; }

  /** The name of the node at `url`, when the cluster view told it. */
  nameOf(url) {
    return this.names.get(endpointKey(url)) || url.replace(/^wss?:\/\//, "").replace(/\/$/, "");
  }

  /** Add endpoints learnt from the cluster view: `[{url, node}]`. The page's own node stays
   * first; unknown URLs are appended in the order given. */
  learnEndpoints(members) {
    for (const { url, node } of members) {
      if (!url) continue;
      if (node) this.names.set(endpointKey(url), node);
      this._learn(url);
    }
  }

  /**
   * Send a request; resolves with its `result`, rejects with an ApiError.
   * @param {string} type the request type
   * @param {object} fields its fields (no `type` or `id`)
   */
  request(type, fields = {}) {
    return new Promise((resolve, reject) => {
      const id = this._ids++;
      const call = {
        id, message: { type, id, ...fields }, resolve, reject, created: performance.now(),
        retryable: IDEMPOTENT.has(type), link: null, losses: 0, refusal: null, timer: null,
      };
      this._calls.set(id, call);
      if (this.connected) this._transmit(call, this.link);
      else this._hold(call);
    });
  }

  /** Sign in with a token typed by the operator: hello on the node the login form came from
   * (or a fresh connection), then carry on as after any connect. Resolves when in use;
   * rejects with AuthRefused (the server's message) or an Error saying why not sent. */
  async login(token) {
    const wait = this.nextLoginAt - performance.now();
    if (wait > 0) {
      throw new AuthRefused(`wait ${Math.ceil(wait / 1000)} s before trying again`,
        { hadToken: true });
    }
    this._stopped = false;
    this.storage.setItem(TOKEN_KEY, token);
    let link = this.loginLink;
    this.loginLink = null;
    if (!link || link.ended) {
      link = null;
      for (const url of this.endpoints) {
        try {
          link = await this._probe(url);
          break;
        } catch (error) {
          // the next endpoint
        }
      }
      if (!link) {
        this.storage.removeItem(TOKEN_KEY);
        throw new Error("no tieline node answers; check the network and try again");
      }
    }
    try {
      await this._establish(link, { previous: null, reason: "signed in" });
    } catch (error) {
      if (error instanceof AuthRefused) {
        this.storage.removeItem(TOKEN_KEY);
        this.loginFailures += 1;
        this.nextLoginAt = performance.now() + loginBackoffMs(this.loginFailures);
        if (!link.ended) this.loginLink = link;
        this._phase("login", { endpoint: link.url, node: link.node, message: error.message,
          refused: true, retryAt: this.nextLoginAt });
      } else {
        this._drop(link, "not used");
        this._phase("login", { endpoint: link.url, message: `${error.message}`, refused: false });
      }
      throw error;
    }
    this.loginFailures = 0;
    this.nextLoginAt = 0;
  }

  /** Forget the token and show the login form. */
  signOut() {
    this.storage.removeItem(TOKEN_KEY);
    this.stop();
    this._phase("login", { message: "Signed out.", refused: false });
  }

  // -- finding a node -------------------------------------------------------------------

  _learn(url) {
    if (!this.endpoints.some((u) => endpointKey(u) === endpointKey(url))) this.endpoints.push(url);
  }

  /** Endpoints to try after losing `lostUrl`: `prefer`, those after the lost one, it last. */
  _rotation(lostUrl, prefer) {
    const keys = this.endpoints.map(endpointKey);
    let order;
    if (lostUrl && keys.includes(endpointKey(lostUrl))) {
      const i = keys.indexOf(endpointKey(lostUrl));
      order = [...this.endpoints.slice(i + 1), ...this.endpoints.slice(0, i + 1)];
    } else {
      order = lostUrl ? [...this.endpoints, lostUrl] : [...this.endpoints];
    }
    if (prefer && (!lostUrl || endpointKey(prefer) !== endpointKey(lostUrl))) order.unshift(prefer);
    return order;
  }

  /** Look for a node until one is in use (or the login form must ask). */
  async _seek(lost, reason) {
    if (this._seeking || this._stopped) return;
    this._seeking = true;
    const delays = failoverDelays();
    const prefer = lost ? ((lost.standby && lost.node.active) || lost.refusedActive) : null;
    try {
      for (;;) {
        const failures = [];
        const candidates = this._rotation(lost ? lost.url : null, prefer);
        const link = await this._pass(candidates, failures, {
          activeOnly: false, previous: lost ? lost.url : null, reason,
          onTry: (url) => this._phase(lost ? "lost" : "connecting", {
            endpoint: lost ? lost.url : null, lostName: lost ? lost.name : null,
            trying: url, tryingName: this.nameOf(url), reason,
          }),
        });
        if (link || this._stopped || this.phase === "login") return;
        const delay = next(delays);
        this._phase(lost ? "lost" : "connecting", {
          endpoint: lost ? lost.url : null, lostName: lost ? lost.name : null, trying: null,
          reason, failures, retryInMs: delay,
        });
        await sleep(delay);
        if (this._stopped) return;
      }
    } finally {
      this._seeking = false;
    }
  }

  /**
   * One pass over `candidates`: put in use the first active node whose epoch is not behind,
   * else (unless `activeOnly`) the first such standby. A standby's `active` is tried next.
   * Returns the link now in use, or null; each URL not used adds a reason to `failures`.
   */
  async _pass(candidates, failures, { activeOnly, previous, reason, replacing = null, onTry }) {
    const queue = [...candidates];
    const tried = new Set();
    let fallback = null;
    try {
      while (queue.length) {
        const url = queue.shift();
        const key = endpointKey(url);
        if (tried.has(key)) continue;
        tried.add(key);
        if (onTry) onTry(url);
        let link;
        try {
          link = await this._probe(url);
        } catch (error) {
          failures.push(`${this.nameOf(url)}: ${error.message}`);
          continue;
        }
        if (this._stopped) {
          this._drop(link, "stopped");
          return null;
        }
        const stale = this._stale(link);
        if (stale) {
          failures.push(`${this.nameOf(url)}: ${stale}`);
          this._drop(link, "epoch behind");
          continue;
        }
        if (link.standby) {
          const named = link.node.active;
          if (typeof named === "string" && named) {
            this._learn(named);
            if (!tried.has(endpointKey(named))) queue.unshift(named);
          }
          failures.push(`${link.name} is standby (active: ${named ? this.nameOf(named) : "unknown"})`);
          if (!fallback && !activeOnly) fallback = link;
          else this._drop(link, "standby");
          continue;
        }
        if (await this._tryEstablish(link, failures, { previous, reason, replacing })) return link;
        if (this.phase === "login") return null;
      }
      if (fallback) {
        const link = fallback;
        fallback = null;
        const stale = this._stale(link);
        if (stale) {
          failures.push(`${link.name}: ${stale}`);
          this._drop(link, "epoch behind");
          return null;
        }
        if (await this._tryEstablish(link, failures, { previous, reason, replacing })) return link;
      }
      return null;
    } finally {
      if (fallback) this._drop(fallback, "not used");
    }
  }

  _stale(link) {
    if (link.epoch < this.maxEpoch) {
      return `announces epoch ${link.epoch}, lower than epoch ${this.maxEpoch} already seen: `
        + "left behind by a failover, not used";
    }
    this.maxEpoch = link.epoch;
    return null;
  }

  async _tryEstablish(link, failures, options) {
    try {
      await this._establish(link, options);
      return true;
    } catch (error) {
      if (error instanceof AuthRefused) {
        if (error.hadToken) this.storage.removeItem(TOKEN_KEY);
        this.loginLink = link;
        this._phase("login", { endpoint: link.url, node: link.node, message: error.message,
          refused: error.hadToken });
        return false;
      }
      failures.push(`${link.name}: ${error.message}`);
      this._drop(link, "not used");
      return false;
    }
  }

  /** How long a node may take to greet: a live node sends its hello at once, so no longer
   * than the heartbeat budget (at least 1 s, at most connectTimeoutMs). A node that accepts
   * the connection but is hung (SIGSTOP, a frozen VM) costs no more than that. */
  get _greetingTimeoutMs() {
    const budget = this.link ? this.link.timeoutMs : (this._budgetMs || 1500);
    return Math.min(this.connectTimeoutMs, Math.max(1000, budget));
  }

  /** Open a WebSocket to `url` and read the node's greeting (no hello sent yet). */
  _probe(url) {
    const timeoutMs = this._greetingTimeoutMs;
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (error) {
        reject(new Error(`cannot open ${url}: ${error.message}`));
        return;
      }
      let settled = false;
      const timer = setTimeout(() => {
        finish(new Error(`no greeting within ${timeoutMs / 1000} s`));
        ws.close();
      }, timeoutMs);
      const finish = (error, link) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(link);
      };
      ws.onerror = () => finish(new Error("connection refused or failed"));
      ws.onclose = (ev) => finish(new Error(`closed before its greeting (code ${ev.code})`));
      ws.onmessage = (ev) => {
        let greeting;
        try {
          greeting = JSON.parse(ev.data);
        } catch (error) {
          finish(new Error("the greeting is not JSON"));
          ws.close();
          return;
        }
        if (!greeting || greeting.type !== "hello") {
          finish(new Error(`expected hello from the server, got ${greeting && greeting.type}`));
          ws.close();
          return;
        }
        const link = new Link(url, ws, greeting);
        this._budgetMs = link.timeoutMs;
        ws.onmessage = (e) => this._receive(link, e.data);
        ws.onclose = (e) => this._ended(link, `the server closed the connection (code ${e.code})`);
        ws.onerror = null;
        this._watch(link);
        finish(null, link);
      };
    });
  }

  /** The heartbeat watchdog: one timer checks the links in use every 50 ms; a link silent
   * for longer than its server's heartbeat_timeout_ms is dead. When the check itself ran
   * late (the page was busy, drawing a big snapshot say, or its tab was in the background),
   * messages that waited behind it are read first: the verdict waits one more check, so a
   * busy page does not take a live node for a dead one. */
  _watch(link) {
    link.suspect = false;
    if (this._watchdog) return;
    let lastTick = performance.now();
    this._watchdog = setInterval(() => {
      const now = performance.now();
      const late = now - lastTick > 150;
      lastTick = now;
      for (const l of [this.link, this.loginLink]) {
        if (!l || l.ended) continue;
        const silent = now - l.lastSeen;
        if (silent <= l.timeoutMs) {
          l.suspect = false;
        } else if (late && !l.suspect) {
          l.suspect = true;
        } else {
          this._ended(l, `no message for ${(silent / 1000).toFixed(1)} s (a heartbeat is due `
            + `every ${l.greeting.heartbeat_ms || "?"} ms): node dead or unreachable`);
        }
      }
    }, 50);
  }

  /** Authenticate on `link`, subscribe, then put it in use. */
  async _establish(link, { previous, reason, replacing = null }) {
    const token = this.token;
    if (!token && !this.anonymous) {
      throw new AuthRefused("Enter your token to use this panel.", { hadToken: false });
    }
    const hello = { protocol: PROTOCOL, client: this.clientName };
    if (token) hello.token = token;
    let result;
    try {
      result = await this._linkRequest(link, "hello", hello, this.connectTimeoutMs);
    } catch (error) {
      if (error instanceof ApiError && error.code === "unauthenticated") {
        throw new AuthRefused(token ? `The token was refused by ${link.name}: ${error.message}`
          : "This node needs a token: enter yours below.", { hadToken: Boolean(token) });
      }
      throw error;
    }
    if (result.node && typeof result.node === "object") link.node = { ...result.node };
    const stale = this._stale(link);
    if (stale) throw new Error(stale);
    let snapshot;
    try {
      snapshot = await this._linkRequest(link, "subscribe", {}, this.routerTimeoutMs);
    } catch (error) {
      if (error instanceof ApiError && error.code === "forbidden") {
        throw new AuthRefused(`User ${result.user.name} may not watch: ${error.message}`,
          { hadToken: Boolean(token) });
      }
      throw error;
    }
    if (link.ended) throw new Error(link.reason || "connection lost");
    // commit: nothing awaits from here on, so no event slips between snapshot and use
    const old = this.link;
    this.link = link;
    this._huntDelay = 0;
    this.user = result.user;
    this.node = link.node;
    if (this.loginLink === link) this.loginLink = null;
    if (replacing) {
      for (const call of this._calls.values()) {
        if (call.link === replacing && call.retryable) call.link = null;
      }
      this._retire(replacing);
    } else if (old && old !== link) {
      this._drop(old, "replaced");
    }
    this._phase("ready", { endpoint: link.url, node: link.node, user: this.user, previous,
      reason });
    this.dispatchEvent(new CustomEvent("snapshot", {
      detail: { result: snapshot, endpoint: link.url, reconnected: Boolean(previous) },
    }));
    const held = link.held;
    link.held = [];
    for (const message of held) this._deliver(message);
    this._sendWaiting(link);
    this._scheduleHunt();
  }

  /** A request of the connection itself (hello, subscribe) on one link. */
  _linkRequest(link, type, fields, timeoutMs) {
    return new Promise((resolve, reject) => {
      const id = `c${this._ids++}`;
      const timer = setTimeout(() => {
        link.waiting.delete(id);
        reject(new Error(`no answer to ${type} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      link.waiting.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      try {
        link.ws.send(JSON.stringify({ type, id, ...fields }));
      } catch (error) {
        link.waiting.delete(id);
        clearTimeout(timer);
        reject(new Error(`cannot send: ${error.message}`));
      }
    });
  }

  // -- the link in use ------------------------------------------------------------------

  _receive(link, raw) {
    link.lastSeen = performance.now();
    let message;
    try {
      message = JSON.parse(raw);
    } catch (error) {
      this._ended(link, "the server sent something that is not JSON");
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.type === "response") this._response(link, message);
    else if (message.type === "event") {
      if (message.event === "status" && message.status && typeof message.status === "object") {
        this._observeStatus(link, message.status);
      }
      if (link === this.link) this._deliver(message);
      else if (!link.retired) link.held.push(message);
    }
  }

  _deliver(message) {
    this.dispatchEvent(new CustomEvent("event", { detail: message }));
  }

  _response(link, message) {
    const own = link.waiting.get(message.id);
    if (own) {
      link.waiting.delete(message.id);
      if (message.ok) own.resolve(message.result || {});
      else own.reject(new ApiError(message.error || {}));
      return;
    }
    const call = this._calls.get(message.id);
    if (!call || call.link !== link) return; // answered elsewhere, or sent again elsewhere
    if (message.ok) {
      this._finish(call);
      call.resolve(message.result || {});
      return;
    }
    const error = new ApiError(message.error || {});
    if (error.code === "standby" && call.retryable && !this._stopped) {
      // not carried out: hold it while the active node is looked for
      call.refusal = error;
      link.refusedActive = error.active || link.refusedActive;
      if (error.active) this._learn(error.active);
      this._hold(call);
      this._hunt();
      return;
    }
    this._finish(call);
    call.reject(error);
  }

  _observeStatus(link, status) {
    link.node = { ...status };
    if (link !== this.link) {
      this.maxEpoch = Math.max(this.maxEpoch, link.epoch);
      return;
    }
    this.node = link.node;
    if (link.epoch < this.maxEpoch) {
      this._ended(link, `${link.name} announced epoch ${link.epoch}, lower than epoch `
        + `${this.maxEpoch} already seen: left behind by a failover`);
      return;
    }
    this.maxEpoch = link.epoch;
    this.dispatchEvent(new CustomEvent("status", { detail: { node: link.node } }));
    this._phase("ready", { endpoint: link.url, node: link.node, user: this.user });
    if (link.standby) {
      if (link.node.active) this._learn(link.node.active);
      this._huntDelay = 0;
      this._hunt();
    } else {
      this._sendWaiting(link);
    }
  }

  /** While the node in use is standby, look for an active node now and then: after
   * huntIntervalMs, then twice as long each time none answers, up to 30 s (a status event
   * saying the node is standby looks at once). */
  _scheduleHunt() {
    clearTimeout(this._huntTimer);
    if (!this.link || !this.link.standby || this._stopped) return;
    const delay = this._huntDelay || this.huntIntervalMs;
    this._huntDelay = Math.min(delay * 2, 30000);
    this._huntTimer = setTimeout(() => this._hunt(), delay);
  }

  /** The node in use is standby: move to an active node if one answers. */
  async _hunt() {
    const link = this.link;
    if (this._hunting || this._seeking || !link || this._stopped) return;
    this._hunting = true;
    try {
      const named = (link.standby && link.node.active) || link.refusedActive;
      const candidates = [...(named ? [named] : []), ...this.endpoints]
        .filter((u) => endpointKey(u) !== endpointKey(link.url));
      const failures = [];
      const found = await this._pass(candidates, failures, {
        activeOnly: true, previous: link.url, reason: `${link.name} is standby`,
        replacing: link,
      });
      if (!found && link === this.link && !link.ended) {
        const waiting = [...this._calls.values()].filter((c) => c.refusal && !c.link);
        const now = performance.now();
        for (const call of waiting) {
          if (now - call.created > this.retryWindowMs) {
            this._finish(call);
            call.reject(call.refusal);
          }
        }
        if (!link.standby) this._sendWaiting(link);
      }
    } finally {
      this._hunting = false;
      this._scheduleHunt();
    }
  }

  /** Stop using `link` once the requests bound to it are answered (or the window ends). */
  _retire(link) {
    link.retired = true;
    link.held = [];
    const bound = [...this._calls.values()].filter((c) => c.link === link);
    if (!bound.length) {
      this._drop(link, "moved to the active node");
      return;
    }
    setTimeout(() => this._drop(link, "moved to the active node"), this.retryWindowMs);
  }

  _drop(link, reason) {
    if (!link.ended) {
      link.ended = true;
      link.reason = reason;
      link.ws.onmessage = null;
      link.ws.onclose = null;
      try {
        link.ws.close(1000);
      } catch (error) {
        // closing a socket that never opened: nothing to do
      }
      for (const w of link.waiting.values()) w.reject(new Error(`connection closed: ${reason}`));
      link.waiting.clear();
    }
  }

  /** `link` is gone: settle what waited on it; fail over if it was in use. */
  _ended(link, reason) {
    if (link.ended) return;
    this._drop(link, reason);
    link.reason = reason;
    if (link === this.loginLink) {
      this.loginLink = null;
      return;
    }
    const bound = [...this._calls.values()].filter((c) => c.link === link);
    if (link !== this.link) {
      for (const call of bound) this._lost(call, link, reason, { retry: false });
      return;
    }
    this.link = null;
    for (const call of bound) this._lost(call, link, reason, { retry: true });
    clearTimeout(this._huntTimer);
    this._phase("lost", { endpoint: link.url, lostName: link.name, reason, trying: null });
    this._seek(link, reason);
  }

  // -- requests -------------------------------------------------------------------------

  _transmit(call, link) {
    call.link = link;
    call.refusal = null;
    clearTimeout(call.timer);
    const timeoutMs = IMMEDIATE.has(call.message.type) ? this.requestTimeoutMs : this.routerTimeoutMs;
    call.timer = setTimeout(() => {
      if (!this._calls.has(call.id)) return;
      this._fail(call, { code: "no_answer",
        message: `no answer from ${link.name} within ${timeoutMs / 1000} s: it may or may not `
          + "have been carried out; the tally shows what the router did" });
    }, timeoutMs);
    try {
      link.ws.send(JSON.stringify(call.message));
    } catch (error) {
      this._hold(call);
    }
  }

  _hold(call) {
    call.link = null;
    clearTimeout(call.timer);
    const left = this.retryWindowMs - (performance.now() - call.created);
    call.timer = setTimeout(() => {
      if (!this._calls.has(call.id) || call.link) return;
      if (call.refusal) this._fail(call, call.refusal);
      else {
        this._fail(call, { code: "not_sent", message: `not sent: no tieline node took it within `
          + `${this.retryWindowMs / 1000} s of the request` });
      }
    }, Math.max(0, left));
  }

  _lost(call, link, reason, { retry }) {
    call.losses += 1;
    const lost = `the connection to ${link.name} was lost before the answer (${reason}): it may `
      + "or may not have been carried out; the tally shows what the router did";
    if (!retry || !call.retryable || call.losses >= MAX_LOST_CONNECTIONS
        || performance.now() - call.created > this.retryWindowMs) {
      this._fail(call, { code: "connection_lost", message: lost });
    } else {
      this._hold(call);
    }
  }

  /** Send the requests waiting for a node; writes a standby refused wait for an active one. */
  _sendWaiting(link) {
    for (const call of [...this._calls.values()]) {
      if (call.link || !this._calls.has(call.id)) continue;
      if (call.refusal && link.standby) continue;
      this._transmit(call, link);
    }
  }

  _finish(call) {
    clearTimeout(call.timer);
    this._calls.delete(call.id);
  }

  _fail(call, payload) {
    this._finish(call);
    call.reject(payload instanceof ApiError ? payload : new ApiError(payload));
  }

  _phase(phase, detail) {
    this.phase = phase;
    this.dispatchEvent(new CustomEvent("phase", { detail: { phase, ...detail } }));
  }
}

function next(iterator) {
  return iterator.next().value;
}
