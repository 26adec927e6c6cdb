// Port ranges as operators type them: "1-10,17" (spaces allowed, ranges either way round).

const RANGE_TEXT = /^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*,?\s*$/;

/** Whether `text` is a range filter (digits, commas, dashes) rather than a label search. */
export function isRangeText(text) {
  return RANGE_TEXT.test(text);
}

/**
 * The set of port numbers `text` names, limited to 1..max.
 * @returns {Set<number>|null} null when `text` is not a range list.
 */
export function parseRanges(text, max) {
  if (!isRangeText(text)) return null;
  const ports = new Set();
  for (const part of text.split(",")) {
    if (!part.trim()) continue;
    const [a, b] = part.split("-").map((x) => Number.parseInt(x, 10));
    const lo = Math.max(1, Math.min(a, Number.isNaN(b) ? a : b));
    const hi = Math.min(max, Math.max(a, Number.isNaN(b) ? a : b));
    for (let p = lo; p <= hi; p++) ports.add(p);
  }
  return ports;
}

/**
 * Filter `ports` (in their order) by `text`: a range list keeps the numbers it names,
 * anything else keeps ports whose label contains it (case-insensitive) or whose number
 * it is.
 */
export function filterPorts(ports, text, labelOf, max) {
  const query = text.trim();
  if (!query) return ports;
  const ranges = parseRanges(query, max);
  if (ranges) return ports.filter((p) => ranges.has(p));
  const needle = query.toLowerCase();
  return ports.filter((p) => labelOf(p).toLowerCase().includes(needle));
}
