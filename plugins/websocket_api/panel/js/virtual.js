// A virtualised list: only the rows in view (and a few around them) exist in the DOM, rows
// are reused as the list scrolls, and every row has the same height. A list of 4,096
// destinations costs about thirty elements.

export class VirtualList {
  /**
   * @param {HTMLElement} viewport the scrolling element (overflow: auto; a fixed height)
   * @param {object} options
   * @param {number} options.rowHeight each row's height in px
   * @param {() => HTMLElement} options.create makes an empty row
   * @param {(row: HTMLElement, item: any, index: number) => void} options.render fills it
   * @param {number} [options.overscan] rows drawn beyond each edge
   */
  constructor(viewport, { rowHeight, create, render, overscan = 4 }) {
    this.viewport = viewport;
    this.rowHeight = rowHeight;
    this.create = create;
    this.render = render;
    this.overscan = overscan;
    this.items = [];
    this.rows = new Map(); // index -> row element in use
    this.spare = [];
    this.spacer = document.createElement("div");
    this.spacer.className = "vlist-spacer";
    this.viewport.append(this.spacer);
    this._frame = 0;
    this.viewport.addEventListener("scroll", () => this._later(), { passive: true });
    this._resize = new ResizeObserver(() => this._later());
    this._resize.observe(this.viewport);
  }

  /** Show `items` (any values: render gets them), keeping the scroll where it can. */
  setItems(items) {
    this.items = items;
    this.spacer.style.height = `${items.length * this.rowHeight}px`;
    for (const row of this.rows.values()) this._release(row);
    this.rows.clear();
    this.draw();
  }

  /** Redraw the rows in view (all of them, or those whose item is in `only`). */
  refresh(only = null) {
    for (const [index, row] of this.rows) {
      const item = this.items[index];
      if (only === null || only.has(item)) this.render(row, item, index);
    }
  }

  /** The index range in view, [first, last]. */
  visibleRange() {
    const top = this.viewport.scrollTop;
    const first = Math.floor(top / this.rowHeight);
    const last = Math.ceil((top + this.viewport.clientHeight) / this.rowHeight) - 1;
    return [first, Math.min(last, this.items.length - 1)];
  }

  /** Scroll so that row `index` is in view. */
  scrollToIndex(index) {
    const [first, last] = this.visibleRange();
    if (index < first) this.viewport.scrollTop = index * this.rowHeight;
    else if (index > last) {
      this.viewport.scrollTop = (index + 1) * this.rowHeight - this.viewport.clientHeight;
    }
    this.draw();
  }

  /** The row element of `index` when it is drawn. */
  rowAt(index) {
    return this.rows.get(index) || null;
  }

  _later() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.draw();
    });
  }

  /** Draw the rows now in view; recycle the others. */
  draw() {
    const n = this.items.length;
    const height = this.viewport.clientHeight || this.rowHeight * 10;
    const top = this.viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - this.overscan);
    const last = Math.min(n - 1, Math.ceil((top + height) / this.rowHeight) + this.overscan);
    for (const [index, row] of this.rows) {
      if (index < first || index > last) {
        this._release(row);
        this.rows.delete(index);
      }
    }
    for (let i = first; i <= last; i++) {
      let row = this.rows.get(i);
      if (!row) {
        row = this.spare.pop() || this.create();
        row.classList.add("vlist-row");
        row.hidden = false;
        row.style.transform = `translateY(${i * this.rowHeight}px)`;
        if (!row.parentNode) this.viewport.append(row);
        this.rows.set(i, row);
      }
      this.render(row, this.items[i], i);
    }
  }

  _release(row) {
    row.hidden = true;
    this.spare.push(row);
  }
}
