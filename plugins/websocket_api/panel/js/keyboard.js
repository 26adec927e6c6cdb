// The keyboard: Up/Down move the destination, Left/Right the source (a preselection on a
// two-step panel), typing searches (the destination filter, or the source filter when the
// focus is among the sources), Enter takes, Esc clears (the preselection, then refusals,
// then the destination). Keys typed into a text field are that field's, except Enter and the
// arrows in a filter: Enter there picks the first match, Down leaves it for the list.

/**
 * @param {object} app {view(): current view or null, take, active(): whether the routing
 *   panel is in use (signed in, no dialog open)}
 */
export function installKeyboard(app) {
  document.addEventListener("keydown", (ev) => {
    if (!app.active() || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    const view = app.view();
    if (!view) return;
    const take = app.take;
    const target = ev.target instanceof Element ? ev.target : document.body;
    const filter = target.closest("input[data-filter]");
    if (filter) {
      onFilterKey(ev, filter, view, take);
      return;
    }
    if (target.closest("input, textarea, select, dialog")) return;
    const inSources = Boolean(target.closest(".srcs, .xy-src"));
    switch (ev.key) {
      case "ArrowDown":
      case "ArrowUp":
        ev.preventDefault();
        moveDestination(view, take, ev.key === "ArrowDown" ? 1 : -1);
        return;
      case "ArrowRight":
      case "ArrowLeft":
        ev.preventDefault();
        moveSource(view, take, ev.key === "ArrowRight" ? 1 : -1);
        return;
      case "Enter":
        if (target.closest(".view, .detail-src") || target === document.body) {
          if (take.destination !== null && take.source !== null) {
            ev.preventDefault();
            take.take();
          }
        }
        return;
      case "Escape":
        ev.preventDefault();
        take.clear();
        return;
      default:
        break;
    }
    if (ev.key.length === 1 && ev.key !== " ") {
      const input = view.filterInput(inSources ? "source" : "destination");
      ev.preventDefault();
      input.focus();
      input.value += ev.key;
      input.dispatchEvent(new Event("input"));
    }
  });
}

function onFilterKey(ev, input, view, take) {
  const kind = input.dataset.filter;
  if (ev.key === "Enter") {
    ev.preventDefault();
    if (kind === "destination") {
      const first = view.destinationOrder()[0];
      if (first !== undefined) {
        take.selectDestination(first);
        view.reveal(first);
      }
    } else {
      const first = view.sourceOrder()[0];
      if (first !== undefined) {
        take.pointSource(first);
        view.revealSource(first);
      }
    }
  } else if (ev.key === "ArrowDown" && kind === "destination") {
    ev.preventDefault();
    moveDestination(view, take, take.destination === null ? 0 : 1);
  } else if (ev.key === "Escape" && !input.value) {
    ev.preventDefault();
    take.clear();
    input.blur();
  }
}

function moveDestination(view, take, step) {
  const order = view.destinationOrder();
  if (!order.length) return;
  const at = order.indexOf(take.destination);
  const next = at < 0 ? (step < 0 ? order.length - 1 : 0)
    : Math.max(0, Math.min(order.length - 1, at + step));
  take.selectDestination(order[next]);
  view.reveal(order[next]);
}

function moveSource(view, take, step) {
  const order = view.sourceOrder();
  if (!order.length) return;
  const at = order.indexOf(take.source);
  const next = at < 0 ? (step < 0 ? order.length - 1 : 0)
    : Math.max(0, Math.min(order.length - 1, at + step));
  take.pointSource(order[next]);
  view.revealSource(order[next]);
}
