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
