// The Batches page: while a batch runs, fetch the page again every few seconds and bring its rows up to
// date. Only the progress cell changes while the status stays the same, so focus and the Cancel form are
// left alone; a row whose status changed is replaced whole (its files and buttons change too) and the
// change is announced. It stops once no batch on the page is running. The page works without it.
"use strict";

const REFRESH_MS = 3000;

function running() {
  return document.querySelectorAll("tr[data-batch][data-active]");
}

function update(row, fresh, announce) {
  if (fresh.dataset.status === row.dataset.status) {
    const cell = row.querySelector("[data-progress]");
    cell.replaceWith(document.importNode(fresh.querySelector("[data-progress]"), true));
    return;
  }
  const hadFocus = row.contains(document.activeElement);
  const replacement = document.importNode(fresh, true);
  row.replaceWith(replacement);
  if (hadFocus) {  // its Cancel button is gone: keep the keyboard's place on the row
    const heading = replacement.querySelector("th");
    heading.tabIndex = -1;
    heading.focus();
  }
  announce.push(`${fresh.dataset.batch}: ${fresh.querySelector(".badge").textContent}`);
}

async function refresh() {
  const response = await fetch(window.location.href, {credentials: "same-origin", cache: "no-store"});
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const announce = [];
  for (const row of running()) {
    const fresh = page.querySelector(`tr[data-batch="${row.dataset.batch}"]`);
    if (fresh) update(row, fresh, announce);
  }
  if (announce.length) document.getElementById("batch-updates").textContent = announce.join(". ");
}

async function loop() {
  if (!document.hidden) {
    try {
      await refresh();
    } catch (error) {
      // Offline or the server restarting: try again at the next turn.
    }
  }
  if (running().length) {
    setTimeout(loop, REFRESH_MS);
  } else {
    document.getElementById("batches-refresh")?.remove();
  }
}

setTimeout(loop, REFRESH_MS);
