// The demo page: frames of the two nodes' chat pages, and the traffic between them from the demo server's stream.
// Everything from the server is shown with textContent: keys and names never become markup.
"use strict";

(() => {
  const MAX_ROWS = 300;
  const labels = new Map();
  const devices = new Map();
  const eventRows = new Map();
  const log = document.getElementById("traffic-log");
  const table = log.closest("table");
  const status = document.getElementById("demo-status");
  let retryMs = 500;

  // The address carries the token once; the cookie holds it from then on.
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);

  function setStatus(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function label(name) { return labels.get(name) || name; }

  function milliseconds(us) {
    const ms = us / 1000;
    return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
  }

  function bytes(count) {
    if (count < 1024) return `${count} B`;
    if (count < 1 << 20) return `${(count / 1024).toFixed(1)} KiB`;
    return `${(count / (1 << 20)).toFixed(1)} MiB`;
  }

  function clock(ms) {
    const date = new Date(ms);
    return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
  }

  async function start() {
    let info;
    try {
      const response = await fetch("/v1/demo", { credentials: "same-origin" });
      if (!response.ok) throw new Error(`the demo server answered ${response.status}`);
      info = await response.json();
    } catch (error) {
      setStatus(`Cannot load the demo (${error.message}): is parley web --demo still running?`, true);
      return;
    }
    document.getElementById("bucket").textContent = info.relay ? `${info.bucket}, and a relay at ${info.relay}` : info.bucket;
    const template = document.getElementById("device-template");
    for (const participant of info.participants) {
      labels.set(participant.name, participant.label);
      const device = template.content.firstElementChild.cloneNode(true);
      device.dataset.participant = participant.name;
      device.querySelector(".device-name").textContent = `${participant.label} (${participant.user_id})`;
      device.querySelector(".device-home").textContent = participant.home;
      device.querySelector(".device-home").title = participant.home;
      const frame = device.querySelector(".device-frame");
      frame.title = `${participant.label}'s chat`;
      frame.src = participant.page;
      const toggle = device.querySelector(".online-toggle");
      // With a relay, the switch cuts the bucket alone: the relay carries on.
      if (info.relay) device.querySelector(".online-text").textContent = "bucket link";
      toggle.setAttribute("aria-label", info.relay ? `${participant.label} reaches the bucket` : `${participant.label} online`);
      toggle.addEventListener("change", () => setOnline(participant.name, toggle.checked));
      devices.set(participant.name, device);
      template.parentElement.append(device);
    }
    showParticipants(info.participants);
    connect();
  }

  async function setOnline(name, online) {
    try {
      const response = await fetch(`/v1/demo/participants/${encodeURIComponent(name)}/online`, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ online }),
      });
      if (!response.ok) throw new Error(`the demo server answered ${response.status}`);
    } catch (error) {
      setStatus(`Could not switch ${label(name)} ${online ? "online" : "offline"}: ${error.message}`, true);
    }
  }

  function showParticipants(participants) {
    for (const participant of participants) {
      const device = devices.get(participant.name);
      if (!device) continue;
      device.classList.toggle("offline", !participant.online);
      device.querySelector(".online-toggle").checked = participant.online;
    }
  }

  function connect() {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/demo/traffic`);
    socket.addEventListener("open", () => {
      retryMs = 500;
      setStatus("Live: both nodes run in the process of parley web --demo.");
    });
    socket.addEventListener("message", (message) => {
      const update = JSON.parse(message.data);
      if (update.participants) showParticipants(update.participants);
      for (const entry of update.entries || []) show(entry);
      if (update.stats) showStats(update.stats);
      if (update.simulation) showSimulation(update.simulation);
    });
    socket.addEventListener("close", () => {
      setStatus(`The demo server went away; trying again in ${Math.round(retryMs / 1000)} s…`, true);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    });
  }

  function showStats(stats) {
    const requests = stats.requests || {};
    const rows = [
      ["events", String(stats.events)],
      ["on both nodes", String(stats.delivered)],
      ["latency p50", stats.latency_p50_us === null ? "–" : milliseconds(stats.latency_p50_us)],
      ["latency p95", stats.latency_p95_us === null ? "–" : milliseconds(stats.latency_p95_us)],
      ["latest", stats.latency_last_us === null ? "–" : milliseconds(stats.latency_last_us)],
      ["files written", `${requests.put || 0} (${bytes(stats.bytes_written)})`],
      ["files read", `${requests.get || 0} (${bytes(stats.bytes_read)})`],
      ["listings", String(requests.list || 0)],
      ["failed requests", String(stats.failures)],
    ];
    const list = document.getElementById("stats");
    list.replaceChildren(...rows.flatMap(([term, value]) => [element("dt", "", term), element("dd", "", value)]));
    list.querySelectorAll("dd")[0].dataset.stat = "events";
    list.querySelectorAll("dd")[1].dataset.stat = "delivered";
    list.querySelectorAll("dd")[2].dataset.stat = "latency-p50";
  }

  function show(entry) {
    let row;
    if (entry.kind === "event") {
      row = eventRows.get(entry.event_id) || element("tr", "event");
      row.dataset.eventId = entry.event_id;
      row.replaceChildren(element("td", "", clock(entry.at_ms)), element("td", "", label(entry.from)),
        element("td", "", entry.event_type.replace(/^m\.(room\.)?/, "")), eventDetail(entry));
      eventRows.set(entry.event_id, row);
    } else if (entry.kind === "request") {
      row = element("tr", entry.op === "list" ? "request listing" : "request");
      if (entry.failure) row.classList.add("failed");
      const size = entry.op === "list" ? `${entry.size} keys` : bytes(entry.size);
      const detail = `${entry.key} · ${size} · ${milliseconds(entry.us)}${entry.failure ? ` · failed: ${entry.failure}` : ""}`;
      row.replaceChildren(element("td", "", clock(entry.at_ms)), element("td", "", label(entry.participant)),
        element("td", "", entry.op.toUpperCase()), element("td", "", detail));
    } else if (entry.kind === "note") {
      row = element("tr", "note");
      row.replaceChildren(element("td", "", clock(entry.at_ms)), element("td", "", label(entry.participant)),
        element("td", "", "note"), element("td", "", entry.text));
    } else {
      return;
    }
    log.prepend(row);
    while (log.childElementCount > MAX_ROWS) {
      const last = log.lastElementChild;
      if (last.dataset.eventId) eventRows.delete(last.dataset.eventId);
      last.remove();
    }
  }

  function eventDetail(entry) {
    const cell = element("td");
    cell.append(element("span", "", `${entry.event_id.slice(0, 14)}…`));
    for (const [transport, us] of Object.entries(entry.sent_us)) {
      cell.append(element("span", "", ` · in the ${transport} after ${milliseconds(us)}`));
    }
    for (const [name, us] of Object.entries(entry.stored_us)) {
      if (name === entry.from || us === 0) continue;
      const via = entry.via && entry.via[name] ? ` via the ${entry.via[name]}` : "";
      cell.append(element("span", "", " · stored by "), element("span", "", label(name)),
        element("span", "latency", ` after ${milliseconds(us)}`), element("span", "", via));
    }
    return cell;
  }

  // The simulation panel: its form starts one; the stream shows its lines as it runs and its report when it ends.
  const simulationForm = document.getElementById("simulation-form");
  const simulationStatus = document.getElementById("simulation-status");
  simulationForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const [key, value] of new FormData(simulationForm)) body[key] = key === "transport" ? value : Number(value);
    if (body.transport === "bucket") body.loss = 0;
    try {
      const response = await fetch("/v1/demo/simulation", {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error && answer.error.message ? answer.error.message : `the demo server answered ${response.status}`);
      showSimulation(answer);
    } catch (error) {
      simulationStatus.textContent = `The simulation did not start: ${error.message}`;
      simulationStatus.classList.add("bad");
    }
  });

  function showSimulation(simulation) {
    document.getElementById("simulation-start").disabled = simulation.running;
    simulationStatus.classList.toggle("bad", Boolean(simulation.failure));
    const settings = simulation.settings || {};
    const what = settings.transport ? `${settings.devices} devices over ${settings.transport}, ${settings.rate} messages/s for ${settings.seconds} s` : "";
    if (simulation.running) simulationStatus.textContent = `Running: ${what}…`;
    else if (simulation.failure) simulationStatus.textContent = `Failed: ${simulation.failure}`;
    else if (simulation.report) simulationStatus.textContent = `Done: ${what}.`;
    else simulationStatus.textContent = "";
    document.getElementById("simulation-lines").textContent = (simulation.lines || []).join("\n");
    const report = simulation.report;
    const list = document.getElementById("simulation-report");
    if (!report) {
      list.replaceChildren();
      return;
    }
    const ms = (value) => value === null || value === undefined ? "–" : `${value} ms`;
    const rows = [
      ["messages", String(report.messages), "messages"],
      ["delivered", `${report.deliveries} of ${report.deliveries + report.undelivered}`, "delivered"],
      ["latency p50", ms(report.latency_ms.p50), "latency-p50"],
      ["latency p99", ms(report.latency_ms.p99), "latency-p99"],
      ["files fetched", `${report.file_deliveries} of ${report.file_deliveries + report.files_undelivered}`, "files"],
      ["file p50", ms(report.file_latency_ms.p50), "file-p50"],
      ["converged", ms(report.converged_at_end_ms), "converged"],
      [report.transport === "bucket" ? "requests" : "datagrams", String(report.transport === "bucket" ? report.requests : report.datagrams), "wire"],
      ["bytes/message", String(report.bytes_per_event), "bytes"],
      ["same events", report.same_events ? "yes" : "NO", "same-events"],
      ["same state", report.same_state ? "yes" : "NO", "same-state"],
    ];
    list.replaceChildren(...rows.flatMap(([term, value, stat]) => {
      const dd = element("dd", "", value);
      dd.dataset.stat = stat;
      return [element("dt", "", term), dd];
    }));
  }

  const showRequests = document.getElementById("show-requests");
  const showListings = document.getElementById("show-listings");
  function applyFilters() {
    table.classList.toggle("hide-requests", !showRequests.checked);
    table.classList.toggle("hide-listings", !showListings.checked);
  }
  showRequests.addEventListener("change", applyFilters);
  showListings.addEventListener("change", applyFilters);
  applyFilters();
  start();
})();
