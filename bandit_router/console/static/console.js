// bandit-router console: confirmations for state-changing forms, and the workbench's shortcuts.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

function typing(target) {
  return ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && typing(event.target)) {
    event.target.blur(); // back to the shortcuts
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  const click = (id) => { const el = document.getElementById(id); if (el) { event.preventDefault(); el.click(); } };
  const score = document.getElementById("score");
  if (event.key === "p") click("pass");
  else if (event.key === "f") click("fail");
  else if (event.key === "c") click("claim");
  else if (event.key === "m") {
    const link = document.querySelector(".item .meta a");
    if (link) link.click();
  } else if (/^[0-9]$/.test(event.key) && score) {
    // A digit is a score in tenths; Enter then submits it (the field has the focus).
    event.preventDefault();
    score.value = (Number(event.key) / 10).toFixed(1);
    score.focus();
  }
});

// The rubric a grader works to stays the same from item to item: remember it in this browser.
document.addEventListener("DOMContentLoaded", () => {
  const rubric = document.getElementById("rubric");
  if (!rubric) return;
  rubric.value = rubric.value || localStorage.getItem("br-rubric") || "";
  rubric.form.addEventListener("submit", () => localStorage.setItem("br-rubric", rubric.value));
});
