// Small progressive enhancements; every page works without JavaScript.
"use strict";
document.addEventListener("submit", function (event) {
  // Avoid double submissions (two identical evidence items, two appeals).
  var button = event.target.querySelector("button[type=submit]");
  if (button) { setTimeout(function () { button.disabled = true; }, 0); }
});
document.addEventListener("change", function (event) {
  // Show only the evidence fields that fit the chosen kind.
  if (event.target.id !== "evidence-kind") { return; }
  var form = event.target.form, kind = event.target.value;
  form.querySelector("[name=url]").closest("label").hidden = kind !== "link";
  form.querySelector("[name=file]").closest("label").hidden = kind !== "file";
});
document.addEventListener("DOMContentLoaded", function () {
  var select = document.getElementById("evidence-kind");
  if (select) { select.dispatchEvent(new Event("change", { bubbles: true })); }
});
document.addEventListener("DOMContentLoaded", function () {
  // Live cards: refetch their inner HTML (rendered and escaped by the server) on a timer.
  document.querySelectorAll("[data-refresh]").forEach(function (card) {
    var every = Math.max(10, parseInt(card.getAttribute("data-every"), 10) || 30) * 1000;
    setInterval(function () {
      if (document.hidden) { return; }
      fetch(card.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { card.innerHTML = html; } })
        .catch(function () { /* offline: keep what is shown */ });
    }, every);
  });
});
document.addEventListener("submit", function (event) {
  // A second case for the same post: ask first.
  var ask = event.target.getAttribute("data-confirm");
  if (ask && !window.confirm(ask)) { event.preventDefault(); event.stopImmediatePropagation(); }
}, true);
(function () {
  // Typed work survives an expired session: each form's fields are kept in sessionStorage
  // (this tab only) while typing; after a failed submission (error or sign-in page) and
  // signing in again, the form page gets them back. A successful submission forgets them.
  var PREFIX = "fb-draft:", PENDING = "fb-draft-pending", FAILED = "fb-draft-failed";
  function keyOf(form) { return PREFIX + location.pathname + "|" + (form.getAttribute("action") || ""); }
  function fields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      if (!el.name || el.name === "csrf_token" || el.name === "version" || el.name === "password") { return false; }
      var type = (el.type || "").toLowerCase();
      return el.tagName === "TEXTAREA" || el.tagName === "SELECT" || ["text", "url", "search", "email", ""].indexOf(type) >= 0 && el.tagName === "INPUT";
    });
  }
  function save(form) {
    var data = {};
    fields(form).forEach(function (el) { data[el.name] = el.value; });
    try { sessionStorage.setItem(keyOf(form), JSON.stringify(data)); } catch (e) { /* storage full or off */ }
  }
  document.addEventListener("input", function (event) { if (event.target.form && event.target.form.method === "post") { save(event.target.form); } });
  document.addEventListener("change", function (event) { if (event.target.form && event.target.form.method === "post") { save(event.target.form); } });
  document.addEventListener("submit", function (event) {
    if (event.defaultPrevented || event.target.method !== "post") { return; }
    save(event.target);
    sessionStorage.setItem(PENDING, keyOf(event.target));
  });
  document.addEventListener("DOMContentLoaded", function () {
    var failedPage = document.querySelector("section.error, form[action='/login']");
    var pending = sessionStorage.getItem(PENDING);
    if (failedPage) {
      if (pending && !document.querySelector("form[action='/login']")) { sessionStorage.setItem(FAILED, pending); }
      return;
    }
    sessionStorage.removeItem(PENDING);
    var failed = sessionStorage.getItem(FAILED);
    sessionStorage.removeItem(FAILED);
    if (pending && pending !== failed) { sessionStorage.removeItem(pending); }  // it went through
    if (!failed) { return; }
    document.querySelectorAll("form[method=post]").forEach(function (form) {
      if (keyOf(form) !== failed) { return; }
      var data = JSON.parse(sessionStorage.getItem(failed) || "{}");
      fields(form).forEach(function (el) { if (data[el.name] !== undefined && data[el.name] !== "") { el.value = data[el.name]; } });
      var details = form.closest("details");
      if (details) { details.open = true; }
      var note = document.createElement("p");
      note.className = "flash good draft-restored";
      note.setAttribute("role", "status");
      var text = document.querySelector("meta[name=fb-restored]");
      note.textContent = text ? text.getAttribute("content") : "Restored";
      form.parentNode.insertBefore(note, form);
      sessionStorage.removeItem(failed);
    });
  });
})();
(function () {
  // Inline validation in the page's language: the field says what is wrong, next to it,
  // before anything is sent (the browser's own bubble speaks the browser's language).
  function message(el) {
    var meta = function (name) { var m = document.querySelector("meta[name=" + name + "]"); return m ? m.getAttribute("content") : ""; };
    if (el.validity.valueMissing) { return meta("fb-required"); }
    if (el.validity.typeMismatch || el.validity.patternMismatch) { return meta("fb-format"); }
    if (el.validity.tooLong || el.validity.tooShort) { return meta("fb-length"); }
    return el.validationMessage;
  }
  document.addEventListener("invalid", function (event) {
    var el = event.target, note = el.parentNode.querySelector(".field-error");
    if (!note) {
      note = document.createElement("span");
      note.className = "field-error";
      note.id = (el.name || "field") + "-error-" + Math.random().toString(36).slice(2, 8);
      note.setAttribute("role", "alert");
      el.insertAdjacentElement("afterend", note);
      el.setAttribute("aria-describedby", note.id);
    }
    note.textContent = message(el);
    el.setAttribute("aria-invalid", "true");
  }, true);
  document.addEventListener("input", function (event) {
    var el = event.target;
    if (el.getAttribute && el.getAttribute("aria-invalid") === "true" && el.checkValidity()) {
      el.removeAttribute("aria-invalid");
      var note = el.parentNode.querySelector(".field-error");
      if (note) { note.textContent = ""; }
    }
  });
})();
