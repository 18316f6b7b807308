// pgclip gallery: drop a photo on an upload form; live status while a backfill or worker runs.
"use strict";
document.querySelectorAll("form.drop").forEach((form) => {
  const input = form.querySelector("input[type=file]");
  form.addEventListener("dragover", (e) => { e.preventDefault(); form.classList.add("over"); });
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (e) => {
    e.preventDefault();
    form.classList.remove("over");
    if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; form.submit(); }
  });
});

const status = document.querySelector("table#status");
if (status) {
  const refresh = async () => {
    try {
      const rows = await (await fetch("status.json", { cache: "no-store" })).json();
      for (const r of rows) {
        const tr = status.querySelector(`tr[data-id="${CSS.escape(r.table + "." + r.vector_column)}"]`);
        if (!tr) continue;
        for (const k of ["total", "embedded", "pending", "failed", "queued"]) {
          tr.querySelector("." + k).textContent = r[k];
        }
        const bar = tr.querySelector("progress");
        bar.max = r.total || 1;
        bar.value = r.embedded;
      }
    } catch (e) { /* the next tick tries again */ }
  };
  setInterval(refresh, 1000);
}
