// Editing a port's label (permission level 3). The node stores it where the router's
// label_store says (on the device, or in the settings' labels.json); where it cannot (a
// backup is active, labels kept in settings) the API refuses, and the refusal is shown here
// in its words. The new label appears when the API's `labels` event says so, for everyone.

import { h, setText } from "./dom.js";
import { gate } from "./permissions.js";

/** The longest label the API takes (schemas/api/request/label.schema.json). */
export const MAX_LABEL = 64;

export class LabelEditor {
  /** @param {object} deps {conn, perms, kind: "source" | "destination"} */
  constructor({ conn, perms, kind }) {
    this.conn = conn;
    this.perms = perms;
    this.kind = kind;
    this.target = null; // {router, index}
    this.editing = false;
    this.busy = false;
    this.renameButton = h("button", { type: "button", class: "secondary small",
      onclick: () => this.open() }, "Rename");
    this.input = h("input", { type: "text", class: "label-input", maxlength: String(MAX_LABEL),
      spellcheck: "false", autocomplete: "off", aria: { label: `New ${kind} label` },
      onkeydown: (ev) => {
        if (ev.key === "Enter") {
          ev.preventDefault();
          ev.stopPropagation();
          this.save();
        } else if (ev.key === "Escape") {
          ev.preventDefault();
          ev.stopPropagation();
          this.close();
        }
      } });
    this.saveButton = h("button", { type: "button", class: "small", onclick: () => this.save() }, "Save");
    this.cancelButton = h("button", { type: "button", class: "secondary small",
      onclick: () => this.close() }, "Cancel");
    this.form = h("span", { class: "label-edit", hidden: true }, this.input, this.saveButton,
      this.cancelButton);
    this.message = h("p", { class: "inline-message", role: "status", aria: { live: "polite" } });
    this.element = h("div", { class: "labels" }, this.renameButton, this.form, this.message);
  }

  /** Show the editor for port `index` of router `rt` (an open edit of it is kept). */
  draw(rt, index) {
    if (!this.target || this.target.router !== rt.id || this.target.index !== index) {
      this.target = { router: rt.id, index };
      this.rt = rt;
      this.editing = false;
      this.form.hidden = true;
      this.renameButton.hidden = false;
      this.message.textContent = "";
    }
    this.rt = rt;
    const label = this.kind === "source" ? rt.sourceLabel(index) : rt.destinationLabel(index);
    setText(this.renameButton, "Rename");
    this.renameButton.setAttribute("aria-label", `Rename ${this.kind} ${index} (${label})`);
    gate(this.renameButton, this.perms.why("label", rt.id));
    gate(this.saveButton, this.busy ? "Waiting for the answer." : this.perms.why("label", rt.id));
  }

  open() {
    const { rt } = this;
    const { index } = this.target;
    this.input.value = this.kind === "source" ? rt.sourceLabel(index) : rt.destinationLabel(index);
    this.editing = true;
    this.form.hidden = false;
    this.renameButton.hidden = true;
    this.message.textContent = "";
    this.input.focus();
    this.input.select();
  }

  close() {
    this.editing = false;
    this.form.hidden = true;
    this.renameButton.hidden = false;
    this.renameButton.focus();
  }

  async save() {
    if (this.busy || !this.target) return;
    const target = this.target;
    const text = this.input.value.trim();
    this.busy = true;
    this.message.textContent = "Saving…";
    this.message.dataset.kind = "info";
    try {
      await this.conn.request("label", { router: target.router, kind: this.kind,
        index: target.index, text });
      if (this.target === target) {
        this.message.textContent = "";
        this.close();
      }
    } catch (error) {
      if (this.target === target) {
        this.message.textContent = error.message;
        this.message.dataset.kind = "error";
      }
    } finally {
      this.busy = false;
      if (this.target === target && this.rt) this.draw(this.rt, target.index);
    }
  }
}
