// The panels the node offers (the `panels` request: settings' `panels`, every default
// filled in), and the panel selector. A node that does not answer `panels` gets one default
// panel per router, made here the way the server makes them: XY for routers of at most 64
// sources and 64 destinations, a bus view beyond, every level, one group "All".

import { h, replace } from "./dom.js";

/** The largest router (either side) drawn as an XY grid by default. */
export const XY_MAX = 64;

const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

/** The default panel of one router (a snapshot's router object or a RouterTally). */
export function defaultPanel(rt) {
  return {
    name: rt.id, router: rt.id,
    layout: rt.sources <= XY_MAX && rt.destinations <= XY_MAX ? "xy" : "bus",
    two_step_take: false, levels: [...rt.levels],
    destinations: [{ name: "All", ports: range(rt.destinations) }],
    sources: [{ name: "All", ports: range(rt.sources) }],
  };
}

/** A panel from the server, checked against the router it names; null when unusable. */
export function normalisePanel(panel, tally) {
  const rt = tally.router(panel.router);
  if (!rt) return null;
  const groups = (list, max) => {
    const out = (list || []).map((g) => ({
      name: String(g.name), colour: g.colour || null,
      ports: (g.ports || []).filter((p) => Number.isInteger(p) && p >= 1 && p <= max),
    })).filter((g) => g.ports.length);
    return out.length ? out : [{ name: "All", ports: range(max) }];
  };
  const levels = (panel.levels || rt.levels).filter((l) => rt.levels.includes(l));
  return {
    ...panel,
    layout: panel.layout === "xy" || panel.layout === "bus" ? panel.layout : defaultPanel(rt).layout,
    two_step_take: Boolean(panel.two_step_take),
    levels: levels.length ? levels : [...rt.levels],
    destinations: groups(panel.destinations, rt.destinations),
    sources: groups(panel.sources, rt.sources),
  };
}

/**
 * Ask the node for its panels; fall back to one default panel per router when the node does
 * not know the request (an older node) or refuses it.
 * @returns {Promise<{panels: object[], note: string|null}>}
 */
export async function loadPanels(conn, tally) {
  let note = null;
  try {
    const result = await conn.request("panels");
    const panels = (result.panels || []).map((p) => normalisePanel(p, tally)).filter(Boolean);
    if (panels.length) return { panels, note };
    note = "the node defines no usable panel: one default panel per router";
  } catch (error) {
    if (error.code === "connection_lost" || error.code === "not_sent") throw error;
    note = `this node does not list panels (${error.message}): one default panel per router`;
  }
  return { panels: [...tally.routers.values()].map(defaultPanel), note };
}

/** The panel selector (a <select>): `onPick(panel)` when the operator picks another. */
export class PanelSelector {
  constructor(select, onPick) {
    this.select = select;
    this.panels = [];
    select.addEventListener("change", () => {
      const panel = this.panels[Number(select.value)];
      if (panel) onPick(panel);
    });
  }

  setPanels(panels, current) {
    this.panels = panels;
    replace(this.select, panels.map((p, i) => h("option", { value: String(i) },
      p.name === p.router ? p.name : `${p.name} (${p.router})`)));
    const index = Math.max(0, panels.findIndex((p) => p.name === current));
    this.select.value = String(index);
    this.select.disabled = panels.length < 2;
    return panels[index] || null;
  }
}
