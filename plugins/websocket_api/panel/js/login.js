// The login form: asks for the operator's token when the node wants one, says clearly why a
// token was refused, and makes each new attempt after a refusal wait longer (1 s, 2 s, 4 s …
// 30 s): nothing is retried by itself.

import { gate } from "./permissions.js";

export class LoginForm {
  constructor({ conn, section, form, input, message, submit, main, signOut }) {
    this.conn = conn;
    this.section = section;
    this.form = form;
    this.input = input;
    this.message = message;
    this.submit = submit;
    this.main = main;
    this.signOut = signOut;
    this._tick = null;
    this._busy = false;
    conn.addEventListener("phase", (ev) => this._phase(ev.detail));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this._send();
    });
    signOut.addEventListener("click", () => conn.signOut());
  }

  _phase(d) {
    if (d.phase === "login") {
      this.section.hidden = false;
      this.main.hidden = true;
      this.signOut.hidden = true;
      this.message.textContent = d.message || "";
      this.message.dataset.kind = d.refused ? "error" : "info";
      this._countdown(d.retryAt || 0);
      if (document.activeElement !== this.input) this.input.focus();
    } else if (d.phase === "ready") {
      this.section.hidden = true;
      this.main.hidden = false;
      this.signOut.hidden = !this.conn.token;
    }
  }

  _countdown(until) {
    clearInterval(this._tick);
    const show = () => {
      const left = Math.ceil((until - performance.now()) / 1000);
      if (left > 0) {
        gate(this.submit, `Wait ${left} s before trying another token.`);
        this.submit.textContent = `Sign in (${left} s)`;
      } else {
        clearInterval(this._tick);
        gate(this.submit, null);
        this.submit.textContent = "Sign in";
      }
    };
    show();
    if (until > performance.now()) this._tick = setInterval(show, 250);
  }

  async _send() {
    if (this._busy || this.submit.getAttribute("aria-disabled") === "true") return;
    const token = this.input.value.trim();
    if (!token) {
      this.message.textContent = "Enter your token first.";
      this.message.dataset.kind = "error";
      this.input.focus();
      return;
    }
    this._busy = true;
    this.message.textContent = "Signing in…";
    this.message.dataset.kind = "info";
    try {
      await this.conn.login(token);
      this.input.value = "";
    } catch (error) {
      // the connection's "login" phase has put its message in the form
      if (this.message.textContent === "Signing in…") {
        this.message.textContent = error.message;
        this.message.dataset.kind = "error";
      }
    } finally {
      this._busy = false;
    }
  }
}
