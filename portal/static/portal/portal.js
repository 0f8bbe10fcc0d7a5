// Gatehouse portal: copy buttons and the user menu. Pages work without it; it only adds comfort.
"use strict";

function textOf(target) {
  return "value" in target && target.tagName === "INPUT" ? target.value : target.textContent;
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain-HTTP sites have no Clipboard API: fall back to a selected, hidden text area.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  try {
    if (!document.execCommand("copy")) throw new Error("copy refused");
  } finally {
    area.remove();
  }
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const target = document.querySelector(button.dataset.copy);
  if (!target) return;
  const label = button.textContent;
  try {
    await copyText(textOf(target));
    button.textContent = "Copied";
    button.classList.add("copied");
  } catch (error) {
    button.textContent = "Press Ctrl+C";
    if (target.select) target.select();
  }
  setTimeout(() => {
    button.textContent = label;
    button.classList.remove("copied");
  }, 2000);
});

document.addEventListener("focusin", (event) => {
  if (event.target.matches("[data-select-on-focus]")) event.target.select();
});

// Close the user menu on Escape or a click elsewhere, as people expect of a menu.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  document.querySelectorAll("details.user-menu[open]").forEach((menu) => {
    menu.open = false;
    menu.querySelector("summary").focus();
  });
});
document.addEventListener("click", (event) => {
  document.querySelectorAll("details.user-menu[open]").forEach((menu) => {
    if (!menu.contains(event.target)) menu.open = false;
  });
});
