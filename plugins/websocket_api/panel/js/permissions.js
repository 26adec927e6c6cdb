// What the signed-in operator may do here, and why not: one reason per refused action,
// shown on every control that cannot be used (its title on hover, and in words on a tap).
//
// Controls are not `disabled` (a disabled button takes no tap and shows no reason on a
// tablet): they get aria-disabled="true" and their reason, and a click on one shows the
// reason instead of acting.

export const LEVEL_NAMES = ["none", "watch", "route", "administer"];

/** The permission level each action needs (docs/api.md, "Permission levels"). */
const NEEDS = {
  route: 2, salvo: 2, protect: 2, lock: 2, release: 2, force: 3, label: 3,
};

const WORDS = {
  route: "routing", salvo: "taking a salvo", protect: "protecting a destination",
  lock: "locking a destination", release: "releasing a protect or lock",
  force: "releasing someone else's protect or lock", label: "editing labels",
};

export class Permissions {
  /** @param {object} session `{conn, tally}`: the connection and the tally. */
  constructor({ conn, tally }) {
    this.conn = conn;
    this.tally = tally;
  }

  /** Why the operator may not do `action` (on router `routerId`) now; null when they may. */
  why(action, routerId = null) {
    const conn = this.conn;
    if (!conn.connected) return "Not connected: the panel is looking for a tieline node.";
    const user = conn.user || { name: "?", level: 0 };
    const need = NEEDS[action] ?? 2;
    if (user.level < need) {
      return `${user.name} has permission level ${user.level} (${LEVEL_NAMES[user.level]}): `
        + `${WORDS[action] || action} needs level ${need} (${LEVEL_NAMES[need]}).`;
    }
    const node = conn.node || {};
    if (node.state === "standby") {
      const active = node.active ? `the active node is ${conn.nameOf(node.active)}`
        : "no active node is known";
      return `Read-only: node ${node.node} is standby (${node.status}); ${active}.`;
    }
    if (routerId !== null) {
      const rt = this.tally.router(routerId);
      if (rt && !rt.online) {
        return `Router '${routerId}' is offline${rt.offlineReason ? ` (${rt.offlineReason})` : ""}:`
          + " nothing can be sent to it.";
      }
    }
    return null;
  }
}

/** Make `el` usable, or not with `reason` (aria-disabled, title, data-reason). */
export function gate(el, reason) {
  if (reason) {
    if (el.getAttribute("aria-disabled") !== "true") el.setAttribute("aria-disabled", "true");
    if (el.title !== reason) el.title = reason;
    el.dataset.reason = reason;
  } else if (el.hasAttribute("aria-disabled") || el.dataset.reason) {
    el.removeAttribute("aria-disabled");
    el.removeAttribute("title");
    delete el.dataset.reason;
  }
}

/**
 * A tap (or Enter) on a control that may not be used shows its reason in `box` next to it,
 * and does nothing else but tell the control it was looked at: an "inspect" event bubbles
 * from it, so that a read-only operator's tap on a source still shows where it goes.
 */
export function installReasons(box) {
  let timer = null;
  const hide = () => {
    box.hidden = true;
  };
  document.addEventListener("click", (ev) => {
    const el = ev.target instanceof Element ? ev.target.closest("[aria-disabled='true']") : null;
    if (!el) {
      if (!box.hidden && !box.contains(ev.target)) hide();
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
    box.textContent = el.dataset.reason || el.title || "Not available.";
    box.hidden = false;
    const rect = el.getBoundingClientRect();
    const top = Math.min(rect.bottom + 6, window.innerHeight - box.offsetHeight - 6);
    const left = Math.max(6, Math.min(rect.left, window.innerWidth - box.offsetWidth - 6));
    box.style.top = `${Math.max(6, top)}px`;
    box.style.left = `${left}px`;
    clearTimeout(timer);
    timer = setTimeout(hide, 6000);
    el.dispatchEvent(new CustomEvent("inspect", { bubbles: true }));
  }, true);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") hide();
  });
}
