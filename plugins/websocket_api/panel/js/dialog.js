// A confirmation asked in the page (a <dialog>), for actions that take something away from
// someone else: forcing the release of another operator's protect or lock.

export class ConfirmDialog {
  constructor(dialog) {
    this.dialog = dialog;
    this.text = dialog.querySelector("#confirm-text");
    this.ok = dialog.querySelector("#confirm-ok");
    this.cancel = dialog.querySelector("#confirm-cancel");
    this._resolve = null;
    this.ok.addEventListener("click", () => this._close(true));
    this.cancel.addEventListener("click", () => this._close(false));
    dialog.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      this._close(false);
    });
  }

  /** Ask; resolves true when confirmed. */
  ask(question, confirmLabel = "Confirm") {
    if (this._resolve) this._close(false);
    this.text.textContent = question;
    this.ok.textContent = confirmLabel;
    this.dialog.showModal();
    this.cancel.focus();
    return new Promise((resolve) => { this._resolve = resolve; });
  }

  _close(answer) {
    const resolve = this._resolve;
    this._resolve = null;
    if (this.dialog.open) this.dialog.close();
    if (resolve) resolve(answer);
  }
}
