// The browser side of ChunkedUpload (see _chunked.py for the protocol). Files are read slice by slice with
// File.slice(), so the page never holds a whole file either; at most `window` chunks per file are unacknowledged.

function human(n) {
  const units = ["B", "KB", "MB", "GB"];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function newId() {
  return Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Waiting for a reply longer than this with no word from the kernel reads as "the kernel is busy".
const QUIET_MS = 2000;
const KEEP_ROWS = 30;

class Job {
  constructor(view, file, name) {
    this.view = view;
    this.file = file;
    this.name = name;
    this.id = newId();
    this.sentSeq = 0;      // chunks sent
    this.ackedSeq = 0;     // chunks acknowledged
    this.sent = 0;         // bytes the kernel has passed on to the service
    this.state = "queued"; // queued, starting, uploading, finishing, cancelling, done, failed, cancelled
    this.waiters = [];
    this.lastHeard = Date.now();
    this.awaiting = false;
    this.row = this.makeRow();
  }

  makeRow() {
    const row = el("div", "aca-chunked-row");
    this.label = el("span", "aca-chunked-name", this.name);
    this.label.title = this.name;
    this.progress = el("progress", "aca-chunked-progress");
    this.progress.max = Math.max(this.file.size, 1);
    this.progress.value = 0;
    this.info = el("span", "aca-chunked-info", "queued");
    this.cancelButton = el("button", "aca-chunked-cancel jupyter-button", "✕");
    this.cancelButton.title = "Cancel this upload";
    this.cancelButton.addEventListener("click", () => this.cancel());
    row.append(this.label, this.progress, this.info, this.cancelButton);
    return row;
  }

  get finished() {
    return ["done", "failed", "cancelled"].includes(this.state);
  }

  setState(state, text) {
    this.state = state;
    this.row.dataset.state = state;
    if (text !== undefined) this.info.textContent = text;
    if (this.finished) this.cancelButton.disabled = true;
    this.view.refresh();
  }

  heard(msg) {
    this.lastHeard = Date.now();
    this.awaiting = false;
    if (msg.op === "ack") {
      this.ackedSeq = Math.max(this.ackedSeq, msg.seq + 1);
      this.sent = Math.max(this.sent, msg.sent || 0);
      this.progress.value = this.sent;
      if (this.state === "uploading") this.info.textContent = `${human(this.sent)} / ${human(this.file.size)}`;
    } else if (msg.op === "done") {
      this.progress.value = this.progress.max;
      this.setState("done", `✓ uploaded ${human(this.file.size)}`);
    } else if (msg.op === "failed" || msg.op === "rejected") {
      this.setState("failed", `⚠ ${msg.error || "failed"}`);
    } else if (msg.op === "cancelled") {
      this.setState("cancelled", "cancelled");
    }
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((resolve) => resolve(msg));
  }

  next() {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  send(content, buffers) {
    this.awaiting = true;
    this.view.model.send({ ...content, id: this.id }, undefined, buffers);
  }

  cancel() {
    if (this.finished || this.state === "cancelling") return;
    if (this.state === "queued") {
      this.setState("cancelled", "cancelled");
      this.heard({ op: "local-cancel" });
      return;
    }
    this.setState("cancelling", "cancelling…");
    this.send({ op: "cancel" });
  }

  async run() {
    const model = this.view.model;
    const size = this.file.size;
    const limit = model.get("max_bytes");
    if (size > limit) {
      this.setState("failed", `⚠ ${human(size)}: the service accepts at most ${human(limit)} per file`);
      return;
    }
    this.setState("starting", "starting…");
    this.send({ op: "begin", name: this.name, size });
    let reply = await this.next();
    while (!["accepted", "rejected", "failed", "cancelled"].includes(reply.op)) reply = await this.next();
    if (reply.op !== "accepted") return;
    if (this.state === "cancelling") {
      while (!this.finished) await this.next();
      return;
    }
    this.setState("uploading", `0 B / ${human(size)}`);
    const chunk = Math.max(1, model.get("chunk_bytes"));
    const windowSize = Math.max(1, model.get("window"));
    let offset = 0;
    while (offset < size && !this.finished && this.state !== "cancelling") {
      if (this.sentSeq - this.ackedSeq >= windowSize) {
        await this.next();
        continue;
      }
      const end = Math.min(offset + chunk, size);
      let buffer;
      try {
        buffer = await this.file.slice(offset, end).arrayBuffer();
      } catch (err) {
        this.send({ op: "cancel" });
        this.setState("failed", `⚠ the browser could not read the file (${err.message || err})`);
        return;
      }
      if (this.finished || this.state === "cancelling") break;
      this.send({ op: "chunk", seq: this.sentSeq, offset }, [buffer]);
      this.sentSeq += 1;
      offset = end;
    }
    if (this.state === "uploading") this.info.textContent = `${human(this.sent)} / ${human(size)}, finishing…`;
    while (!this.finished) await this.next();
  }
}

export default {
  render({ model, el: host }) {
    const jobs = [];
    const active = new Set();
    const root = el("div", "aca-chunked");
    const bar = el("div", "aca-chunked-bar");
    const pickFiles = el("button", "jupyter-button aca-chunked-files", "⬆ Upload files");
    const pickFolder = el("button", "jupyter-button aca-chunked-folder", "⬆ Upload folder");
    const status = el("span", "aca-chunked-status");
    const fileInput = el("input");
    fileInput.type = "file";
    fileInput.multiple = true;
    fileInput.style.display = "none";
    const folderInput = el("input");
    folderInput.type = "file";
    folderInput.webkitdirectory = true;
    folderInput.multiple = true;
    folderInput.style.display = "none";
    const rows = el("div", "aca-chunked-rows");
    bar.append(pickFiles, pickFolder, status, fileInput, folderInput);
    root.append(bar, rows);
    host.append(root);

    const view = {
      model,
      refresh() {
        const running = jobs.filter((j) => !j.finished);
        const quiet = running.some((j) => j.awaiting && Date.now() - j.lastHeard > QUIET_MS);
        let text = "";
        if (running.length && (model.get("kernel_busy") || quiet)) {
          text = "busy — waiting for the running cell; uploads go on when it ends";
          root.dataset.busy = "1";
        } else {
          delete root.dataset.busy;
          if (running.length) text = `uploading ${running.length} file${running.length === 1 ? "" : "s"}…`;
        }
        status.textContent = text;
        pickFiles.title = `Send files from this browser to ${model.get("destination")} (up to ${human(model.get("max_bytes"))} each)`;
        pickFolder.title = `Send a folder, with its sub-folders, to ${model.get("destination")}`;
      },
    };

    function pump() {
      const parallel = Math.max(1, model.get("parallel"));
      for (const job of jobs) {
        if (active.size >= parallel) break;
        if (job.state !== "queued" || active.has(job)) continue;
        active.add(job);
        job.run()
          .catch((err) => job.setState("failed", `⚠ ${err && err.message ? err.message : err}`))
          .finally(() => {
            active.delete(job);
            pump();
          });
      }
      view.refresh();
    }

    function addFiles(list) {
      for (const file of Array.from(list || [])) {
        const job = new Job(view, file, file.webkitRelativePath || file.name);
        jobs.push(job);
        rows.append(job.row);
      }
      // Old finished rows go first, so the list stays short.
      while (jobs.length > KEEP_ROWS) {
        const old = jobs.findIndex((j) => j.finished);
        if (old < 0) break;
        jobs[old].row.remove();
        jobs.splice(old, 1);
      }
      pump();
    }

    const onMessage = (msg) => {
      if (!msg || typeof msg !== "object" || typeof msg.id !== "string") return;
      const job = jobs.find((j) => j.id === msg.id);
      if (job) job.heard(msg);
      view.refresh();
    };
    pickFiles.addEventListener("click", () => fileInput.click());
    pickFolder.addEventListener("click", () => folderInput.click());
    for (const input of [fileInput, folderInput]) {
      input.addEventListener("change", () => {
        try {
          addFiles(input.files);
        } finally {
          input.value = ""; // picking the same file again uploads it again
        }
      });
    }
    model.on("msg:custom", onMessage);
    model.on("change:kernel_busy", view.refresh);
    model.on("change:destination", view.refresh);
    const timer = setInterval(view.refresh, 500);
    view.refresh();
    return () => {
      clearInterval(timer);
      model.off("msg:custom", onMessage);
      model.off("change:kernel_busy", view.refresh);
      model.off("change:destination", view.refresh);
      // The view goes away (output cleared): stop what it was sending, so the kernel does not wait for it.
      jobs.filter((j) => !j.finished).forEach((j) => j.cancel());
    };
  },
};
