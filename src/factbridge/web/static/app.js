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
