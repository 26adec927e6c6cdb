// What a destination shows besides its name: its sources on the chosen levels, the
// breakaway marker (BRK: its levels carry different sources), protects (P) and locks (L)
// with their owners, a take in flight, and a refusal in the API's words. Shared by the bus
// view and the XY grid so that both say the same thing the same way.

import { describeSources } from "./levels.js";

/**
 * Everything a view shows of one destination.
 * @returns {{sources: string, breakaway: boolean, protects: {kind, owner, levels}[],
 *   pending: string|null, error: string|null}}
 */
export function destinationState(ctx, rt, destination) {
  // every level of the panel, whichever are chosen: a breakaway shows each level's source
  const all = ctx.panel.levels;
  const { text, breakaway } = describeSources(rt, destination, all);
  // protects grouped by kind and owner: "P alice (video, audio)"
  const grouped = new Map();
  for (const [level, p] of rt.protectsOf(destination)) {
    if (!all.includes(level)) continue;
    const key = `${p.kind}\u0000${p.owner}`;
    if (!grouped.has(key)) grouped.set(key, { kind: p.kind, owner: p.owner, levels: [] });
    grouped.get(key).levels.push(level);
  }
  const ticket = ctx.take.pendingOn(destination);
  const error = ctx.take.errorOn(destination);
  return {
    sources: text,
    breakaway,
    protects: [...grouped.values()],
    pending: ticket ? `taking ${rt.sourceLabel(ticket.source)}${ticket.levels ? ` (${ticket.levels.join(", ")})` : ""}…` : null,
    error: error ? error.message : null,
  };
}

/** The badge text of a protect or lock: "P alice" / "L bob", with levels when not all. */
export function protectBadge(p, allLevels) {
  const letter = p.kind === "lock" ? "L" : "P";
  const levels = p.levels.length === allLevels.length ? "" : ` ${p.levels.join("+")}`;
  return `${letter} ${p.owner}${levels}`;
}

export function protectTitle(p) {
  return `${p.kind === "lock" ? "Locked" : "Protected"} by ${p.owner} on ${p.levels.join(", ")}`;
}
