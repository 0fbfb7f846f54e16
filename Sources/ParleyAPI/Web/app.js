// Parley's browser page: rooms, a windowed timeline, a composer and a thread panel over the node's local API
// (docs/API.md). Text from the API only ever reaches the page as text nodes.
(() => {
  "use strict";

  const PAGE_SIZE = 100;          // items per timeline request
  const WINDOW_MAX = 400;         // items rendered at once, whatever the room's length
  const WINDOW_STEP = 100;        // items added to the window when the reader nears an edge
  const WINDOW_START = 200;       // items rendered when (re)opening at the newest
  const NEAR_EDGE_PX = 600;
  const BOTTOM_SLACK_PX = 40;
  const COLLAPSE_AT = 2000;       // characters of a body shown before "Show more"
  const TYPING_RESEND_MS = 4000;
  const TYPING_EXPIRES_MS = 6000;
  const READ_DEBOUNCE_MS = 1000;
  const RETRY_FIRST_MS = 500;
  const RETRY_MAX_MS = 10000;
  const MESSAGE = "m.room.message";
  const COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀", "✅", "🔥"];
  const NODE_DOWN = "The node is not answering: is `parley web` still running?";
  const NODE_DOWN_REMEDY = "Start it again with `parley web` and open the address it prints.";

  // ---------------------------------------------------------------------------------------------------------------
  // DOM helpers

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children; `text` sets textContent, never markup. */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (name === "class") el.className = value;
      else if (name === "text") el.textContent = value;
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child != null) el.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return el;
  }

  const textNode = (s) => document.createTextNode(s);

  // Characters that are invisible or reorder text: shown as marked symbols so that no message can hide text or
  // make one part pass for another. ZWJ and ZWNJ stay (emoji sequences and several scripts need them).
  const SPECIAL_RE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u180e\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]/g;
  // Links end at white space, quotes, angle brackets and every character above, so nothing invisible hides inside.
  const URL_RE = /\bhttps?:\/\/[^\s<>"\u0000-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]+/gi;

  function controlMarker(ch) {
    const code = ch.charCodeAt(0);
    const hex = "U+" + code.toString(16).toUpperCase().padStart(4, "0");
    let shown = hex;
    if (code < 0x20) shown = String.fromCharCode(0x2400 + code);
    else if (code === 0x7f) shown = "\u2421";
    else if (code < 0xa0) shown = "\ufffd";
    return h("span", { class: "ctl", title: `${hex}: an invisible or control character`, text: shown });
  }

  function appendPlain(parent, text) {
    let last = 0;
    for (const match of text.matchAll(SPECIAL_RE)) {
      if (match.index > last) parent.append(textNode(text.slice(last, match.index)));
      parent.append(controlMarker(match[0]));
      last = match.index + match[0].length;
    }
    if (last < text.length) parent.append(textNode(text.slice(last)));
  }

  /** Trailing punctuation belongs to the sentence, except a ")" that closes a "(" of the link. */
  function trimUrl(raw) {
    let url = raw;
    while (/[.,;:!?'")\]}*]$/.test(url)) {
      if (url.endsWith(")") && url.split("(").length >= url.split(")").length) break;
      url = url.slice(0, -1);
    }
    return url;
  }

  function linkFor(raw) {
    let parsed;
    try { parsed = new URL(raw); } catch { return null; }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
    const a = h("a", { target: "_blank", rel: "noopener noreferrer", title: parsed.href });
    a.href = parsed.href;
    appendPlain(a, raw);
    return a;
  }

  /** Appends untrusted text: controls made visible, and http(s) links made clickable when `links`. */
  function fillText(parent, text, links = true) {
    const value = String(text ?? "");
    if (!links) { appendPlain(parent, value); return parent; }
    let last = 0;
    for (const match of value.matchAll(URL_RE)) {
      const url = trimUrl(match[0]);
      const link = linkFor(url);
      if (!link) continue;
      appendPlain(parent, value.slice(last, match.index));
      parent.append(link);
      last = match.index + url.length;
    }
    appendPlain(parent, value.slice(last));
    return parent;
  }

  function truncate(text, max) {
    const flat = String(text ?? "");
    if (flat.length <= max) return flat;
    let cut = max;
    const code = flat.charCodeAt(cut - 1);
    if (code >= 0xd800 && code <= 0xdbff) cut -= 1; // never split a surrogate pair
    return flat.slice(0, cut) + "…";
  }

  const pad2 = (n) => String(n).padStart(2, "0");
  const hhmm = (d) => `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  const dayKey = (ms) => { const d = new Date(ms); return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`; };
  const fullDate = (d) => d.toLocaleString(undefined, { dateStyle: "full", timeStyle: "medium" });

  function dayLabel(ms) {
    const key = dayKey(ms);
    if (key === dayKey(Date.now())) return "Today";
    if (key === dayKey(Date.now() - 86400000)) return "Yesterday";
    return new Date(ms).toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }

  function timeElement(ms) {
    const d = new Date(ms);
    if (!Number.isFinite(d.getTime())) return h("span", { class: "time", text: "--:--" });
    return h("time", { class: "time", datetime: d.toISOString(), title: fullDate(d), text: hhmm(d) });
  }

  /** A stable colour class per user id. */
  function colourClass(userId) {
    let hash = 0;
    for (const ch of userId) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return "c" + (hash % 8);
  }

  const isTextField = (el) => el instanceof HTMLElement &&
    (el.isContentEditable || el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !["checkbox", "button", "submit", "radio"].includes(el.type)));

  const storage = {
    get(area, key) { try { return window[area].getItem(key); } catch { return null; } },
    set(area, key, value) {
      try { if (value == null || value === "") window[area].removeItem(key); else window[area].setItem(key, value); } catch { /* storage off */ }
    },
  };

  // ---------------------------------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(code, message, remedy, details, status) {
      super(message);
      this.code = code;
      this.remedy = remedy || "";
      this.details = Array.isArray(details) ? details : [];
      this.status = status || 0;
    }
  }

  const SAFE_ID = /^[A-Za-z0-9._=:-]+$/;
  // Ids go in paths as they are (docs/API.md); anything else is encoded rather than trusted.
  const seg = (id) => (SAFE_ID.test(id) ? id : encodeURIComponent(id));
  const roomPath = (roomId) => `/v1/rooms/${seg(roomId)}`;

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError("network", NODE_DOWN, NODE_DOWN_REMEDY);
    }
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    if (response.ok) return data;
    if (response.status === 401) {
      throw new ApiError("not_allowed", "This page is not signed in to the node: its token changed (parley node --new-token, or a new home).",
        "Open the address `parley web` prints (the one ending in ?token=…).", [], 401);
    }
    const error = data && data.error;
    if (error && typeof error.message === "string") {
      throw new ApiError(error.code, error.message, error.remedy, error.details, response.status);
    }
    throw new ApiError("http", `The node answered ${response.status} ${response.statusText}.`,
      "Try again; if it goes on, look at the node's log.", [], response.status);
  }

  function describeError(error) {
    if (!(error instanceof ApiError)) return `Something went wrong in this page: ${error && error.message}. Reload the page.`;
    const details = error.details.length ? ` ${error.details.join("; ")}.` : "";
    return `${error.message}${details}${error.remedy ? " " + error.remedy : ""}`;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // State

  const state = {
    me: null,                   // {user_id, signing_key}
    rooms: new Map(),           // room id → room
    order: [],                  // room ids, most recently active first
    delivery: new Map(),        // own event id → {state: pending|sent|failed, reason}
    nodeDown: false,            // the last error was the node not answering
  };

  function newRoom(summary) {
    return {
      id: summary.room_id,
      summary,
      items: [],                // what was loaded, oldest first
      byId: new Map(),
      children: new Map(),      // parent event id → Set of reply ids
      expanded: new Set(),      // long bodies the reader opened
      loaded: false,
      loading: null,            // the request of the first page, while it runs
      pending: [],              // stream items that came while the first page loaded
      hasOlder: true,
      olderRequest: null,       // the request of an older page, while it runs
      typing: new Map(),        // user id → expiry timer
      readPosted: null,
      liveUnread: 0,
    };
  }

  const myId = () => (state.me ? state.me.user_id : null);
  const roomLabel = (summary) => summary.direct_peer || summary.name || summary.room_id;
  const isMine = (item) => item.sender_id === myId();
  const countsAsUnread = (item) => item.summary == null && !isMine(item) && !item.local;

  function mentionsMe(text) {
    const me = myId();
    if (!me || !text) return false;
    const escaped = me.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`(?:^|[^A-Za-z0-9._=@/-])@${escaped}(?![A-Za-z0-9_=@/-]|\\.[A-Za-z0-9_=-])`).test(text);
  }

  /** Stores an item by event id; answers whether it was new. */
  function storeItem(room, item, atStart = false) {
    const old = room.byId.get(item.event_id);
    room.byId.set(item.event_id, item);
    if (item.parent_event_id) {
      if (!room.children.has(item.parent_event_id)) room.children.set(item.parent_event_id, new Set());
      room.children.get(item.parent_event_id).add(item.event_id);
    }
    if (old) {
      const index = room.items.indexOf(old);
      if (index >= 0) room.items[index] = item;
      return false;
    }
    if (atStart) room.items.unshift(item); else room.items.push(item);
    return true;
  }

  function resetItems(room, items) {
    room.items = [];
    room.byId.clear();
    room.children.clear();
    for (const item of items) storeItem(room, item);
  }

  function previewText(item, max) {
    if (item.redacted) return "message deleted";
    if (item.undecryptable) return "encrypted message";
    if (item.summary != null) return truncate(item.summary, max);
    const firstLine = String(item.body ?? "").split("\n", 1)[0];
    if (item.msgtype === "file") return truncate(`📎 ${firstLine}`, max);
    return truncate(item.msgtype === "emote" ? `* ${item.sender_id} ${firstLine}` : firstLine, max);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Status line

  function setConnection(kind, text) {
    const el = $("conn-state");
    el.dataset.state = kind;
    el.textContent = text;
  }

  function showError(error, context) {
    state.nodeDown = error instanceof ApiError && error.code === "network";
    const el = $("last-error");
    el.classList.remove("note");
    el.textContent = (context ? context + ": " : "") + describeError(error);
    $("error-dismiss").hidden = false;
  }

  function showNote(text) {
    const el = $("last-error");
    el.classList.add("note");
    el.textContent = text;
    $("error-dismiss").hidden = false;
  }

  function clearError() {
    state.nodeDown = false;
    $("last-error").textContent = "";
    $("error-dismiss").hidden = true;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Room list

  function roomEntryContent(room) {
    const s = room.summary;
    const label = roomLabel(s);
    const name = fillText(h("span", { class: "room-name", dir: "auto" }), label, false);
    if (s.encrypted) name.prepend(h("span", { class: "lock", "aria-hidden": "true", title: "Encrypted", text: "🔒 " }));
    const badges = h("span", { class: "badges" });
    if (s.mentions > 0) badges.append(h("span", { class: "mentions", title: `${s.mentions} mentioning you`, text: String(s.mentions) }));
    if (s.unread > 0) badges.append(h("span", { class: "unread", title: `${s.unread} unread`, text: String(s.unread) }));
    const last = h("span", { class: "room-last", dir: "auto" });
    if (s.last) fillText(last, (s.last.summary == null ? s.last.sender_id + ": " : "") + previewText(s.last, 80), false);
    if (s.membership === "invite") last.textContent = "Invited";
    const spoken = [label, s.direct_peer ? "direct message" : "", s.encrypted ? "encrypted" : "",
      s.unread > 0 ? `${s.unread} unread` : "", s.mentions > 0 ? `${s.mentions} mentioning you` : ""].filter(Boolean).join(", ");
    const button = h("button", { type: "button", class: "room", "aria-label": spoken, title: s.room_id }, name, badges, last);
    return button;
  }

  let roomListQueued = false;
  function queueRoomList() {
    if (roomListQueued) return;
    roomListQueued = true;
    requestAnimationFrame(() => { roomListQueued = false; renderRoomList(); });
  }

  function renderRoomList() {
    const list = $("room-list");
    const existing = new Map([...list.children].map((li) => [li.dataset.roomId, li]));
    const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement.closest("li") : null;
    let cursor = list.firstElementChild;
    for (const id of state.order) {
      const room = state.rooms.get(id);
      let li = existing.get(id);
      existing.delete(id);
      if (!li) li = h("li", { "data-room-id": id });
      li.replaceChildren(roomEntryContent(room));
      if (view.room === room) li.setAttribute("aria-current", "true"); else li.removeAttribute("aria-current");
      if (li === cursor) cursor = cursor.nextElementSibling; else list.insertBefore(li, cursor);
    }
    for (const li of existing.values()) li.remove();
    if (focused && focused.isConnected) focused.querySelector("button").focus();
    $("room-list-empty").hidden = state.order.length > 0;
    applyRoomFilter();
    updateDocumentTitle();
  }

  function applyRoomFilter() {
    const words = $("room-filter").value.trim().toLowerCase();
    for (const li of $("room-list").children) {
      const room = state.rooms.get(li.dataset.roomId);
      const haystack = room ? `${roomLabel(room.summary)} ${room.id}`.toLowerCase() : "";
      li.hidden = words !== "" && !haystack.includes(words);
    }
  }

  function visibleRoomIds() {
    return [...$("room-list").children].filter((li) => !li.hidden).map((li) => li.dataset.roomId);
  }

  function updateDocumentTitle() {
    let unread = 0;
    for (const room of state.rooms.values()) unread += room.summary.unread || 0;
    const where = view.room ? roomLabel(view.room.summary) + " — " : "";
    document.title = `${unread > 0 ? `(${unread}) ` : ""}${where}Parley`;
  }

  async function reloadRooms() {
    const list = await api("GET", "/v1/rooms");
    const ids = new Set();
    for (const summary of list) {
      ids.add(summary.room_id);
      const room = state.rooms.get(summary.room_id);
      if (room) room.summary = summary; else state.rooms.set(summary.room_id, newRoom(summary));
    }
    for (const id of [...state.rooms.keys()]) if (!ids.has(id)) state.rooms.delete(id);
    state.order = list.map((s) => s.room_id);
    if (view.room && !ids.has(view.room.id)) closeRoom();
    renderRoomList();
    renderHeader();
  }

  let roomReloadTimer = null;
  function scheduleRoomReload() {
    clearTimeout(roomReloadTimer);
    roomReloadTimer = setTimeout(() => reloadRooms().catch((e) => showError(e, "Loading the rooms")), 300);
  }

  const summaryTimers = new Map();
  function scheduleSummaryRefresh(room, delay = 1500) {
    clearTimeout(summaryTimers.get(room.id));
    summaryTimers.set(room.id, setTimeout(() => { summaryTimers.delete(room.id); refreshSummary(room); }, delay));
  }

  async function refreshSummary(room) {
    try {
      const info = await api("GET", roomPath(room.id));
      if (!info || !info.summary) return;
      room.summary = info.summary;
      queueRoomList();
      if (room === view.room) renderHeader();
    } catch (error) {
      if (error.code === "unknown_room") scheduleRoomReload();
      else if (error.code !== "network") showError(error, `Refreshing ${room.id}`);
    }
  }

  function moveRoomToFront(room) {
    const index = state.order.indexOf(room.id);
    if (index > 0) { state.order.splice(index, 1); state.order.unshift(room.id); }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The timeline: the items of the open room live in room.items; a window [start, end) of them is in the DOM.

  const view = {
    room: null,
    start: 0,
    end: 0,
    els: new Map(),         // event id → element, for items in the window
    seps: new Map(),        // event id → the day separator before it
    markerId: null,         // the first unread item when the room was opened
    stuck: true,            // the reader is at the newest item
    newBelow: 0,
    threadRoot: null,
    marker: h("div", { class: "new-marker", role: "separator", text: "New messages" }),
    topNote: h("div", { class: "top-note" }),
  };
  const timeline = () => $("timeline");

  function isAtBottom() {
    const tl = timeline();
    return tl.scrollHeight - tl.scrollTop - tl.clientHeight < BOTTOM_SLACK_PX;
  }

  /** The first item at least partly in view and its distance from the top, to keep it in place. */
  function captureAnchor() {
    const tl = timeline();
    const top = tl.scrollTop;
    for (const el of tl.children) {
      if (el.dataset.eventId && el.offsetTop + el.offsetHeight > top) return { id: el.dataset.eventId, offset: el.offsetTop - top };
    }
    return null;
  }

  function restoreAnchor(anchor) {
    const el = anchor && view.els.get(anchor.id);
    if (el && el.isConnected) timeline().scrollTop = el.offsetTop - anchor.offset;
  }

  /** Runs a change of the timeline's content, keeping the reader at the bottom or at the item they were reading. */
  function keepingPlace(change, toBottom = view.stuck) {
    const anchor = toBottom ? null : captureAnchor();
    change();
    if (toBottom) timeline().scrollTop = timeline().scrollHeight;
    else restoreAnchor(anchor);
  }

  function updateTopNote() {
    const room = view.room;
    const note = view.topNote;
    if (!room) return;
    if (room.olderRequest) note.replaceChildren(textNode("Loading older messages…"));
    else if (view.start > 0 || room.hasOlder) note.replaceChildren(h("button", { type: "button", class: "small load-older", text: "Load older messages" }));
    else note.replaceChildren(textNode(room.items.length ? "The beginning of what this node holds of the room." : "No messages yet."));
  }

  /** Makes the DOM hold exactly the window's nodes, reusing the elements already there. */
  function syncTimeline(toBottom) {
    const room = view.room;
    const tl = timeline();
    if (!room) { tl.replaceChildren(); return; }
    keepingPlace(() => {
      updateTopNote();
      const desired = [view.topNote];
      const els = new Map();
      const seps = new Map();
      let previousDay = null;
      for (let i = view.start; i < view.end; i++) {
        const item = room.items[i];
        const day = dayKey(item.timestamp_ms);
        if (day !== previousDay) {
          const sep = view.seps.get(item.event_id) || h("div", { class: "day", role: "separator", text: dayLabel(item.timestamp_ms) });
          seps.set(item.event_id, sep);
          desired.push(sep);
          previousDay = day;
        }
        if (item.event_id === view.markerId) desired.push(view.marker);
        const el = view.els.get(item.event_id) || renderItem(room, item);
        els.set(item.event_id, el);
        desired.push(el);
      }
      view.els = els;
      view.seps = seps;
      let cursor = tl.firstChild;
      for (const node of desired) {
        if (node === cursor) cursor = cursor.nextSibling;
        else tl.insertBefore(node, cursor);
      }
      while (cursor) { const next = cursor.nextSibling; cursor.remove(); cursor = next; }
    }, toBottom ?? (view.stuck && view.end === room.items.length));
    requestAnimationFrame(checkEdges);
  }

  /** Re-renders one item where it shows, and the replies that quote it. */
  function refreshItem(room, id) {
    if (room !== view.room) return;
    const ids = [id, ...(room.children.get(id) || [])];
    keepingPlace(() => {
      for (const each of ids) {
        const old = view.els.get(each);
        const item = room.byId.get(each);
        if (!old || !item) continue;
        const fresh = renderItem(room, item);
        swapElement(old, fresh);
        view.els.set(each, fresh);
      }
    });
    const item = room.byId.get(id);
    if (view.threadRoot && (id === view.threadRoot || (item && item.parent_event_id === view.threadRoot))) renderThread();
  }

  /** Replaces an element, moving focus to the same control in the new one. */
  function swapElement(old, fresh) {
    const focused = document.activeElement;
    let selector = null;
    if (focused && old.contains(focused)) {
      if (focused === old) selector = ":scope";
      else if (focused.dataset.action) selector = `[data-action="${focused.dataset.action}"]`;
      else if (focused.dataset.key != null) selector = `button.reaction[data-key="${CSS.escape(focused.dataset.key)}"]`;
      else selector = ":scope";
    }
    if (old.classList.contains("active")) activateItem(fresh);
    old.replaceWith(fresh);
    if (selector) {
      const target = selector === ":scope" ? fresh : fresh.querySelector(selector) || fresh;
      target.focus({ preventScroll: true });
    }
  }

  function checkEdges() {
    const room = view.room;
    if (!room || !room.loaded) return;
    const tl = timeline();
    if (tl.scrollTop < NEAR_EDGE_PX && (view.start > 0 || room.hasOlder)) extendUp();
    else if (tl.scrollHeight - tl.scrollTop - tl.clientHeight < NEAR_EDGE_PX && view.end < room.items.length) extendDown();
  }

  async function extendUp() {
    const room = view.room;
    if (!room || room.olderRequest) return;
    if (view.start === 0) {
      if (!room.hasOlder) return;
      const added = await loadOlder(room);
      if (view.room !== room || added === 0) return;
    }
    view.start = Math.max(0, view.start - WINDOW_STEP);
    view.end = Math.min(view.end, view.start + WINDOW_MAX);
    timeline().setAttribute("aria-busy", "true");
    syncTimeline(false);
    timeline().removeAttribute("aria-busy");
  }

  function extendDown() {
    const room = view.room;
    view.end = Math.min(room.items.length, view.end + WINDOW_STEP);
    view.start = Math.max(view.start, view.end - WINDOW_MAX);
    syncTimeline(false);
  }

  /** Fetches the page before the oldest loaded item (one request at a time); answers how many items it added. */
  function loadOlder(room, limit = PAGE_SIZE) {
    if (!room.hasOlder) return Promise.resolve(0);
    room.olderRequest = room.olderRequest || fetchOlder(room, limit).finally(() => {
      room.olderRequest = null;
      if (room === view.room) updateTopNote();
    });
    if (room === view.room) updateTopNote();
    return room.olderRequest;
  }

  async function fetchOlder(room, limit) {
    try {
      const oldest = room.items[0];
      const query = `?limit=${limit}` + (oldest ? `&before=${seg(oldest.event_id)}` : "");
      const page = (await api("GET", `${roomPath(room.id)}/timeline${query}`)).items || [];
      let added = 0;
      for (let i = page.length - 1; i >= 0; i--) if (storeItem(room, page[i], true)) added++;
      room.hasOlder = page.length >= limit && added > 0;
      if (room === view.room) { view.start += added; view.end += added; }
      refreshQuotesOf(room, page);
      return added;
    } catch (error) {
      showError(error, "Loading older messages");
      return 0;
    }
  }

  /** Replies shown before their parent was loaded quote it now. */
  function refreshQuotesOf(room, parents) {
    if (room !== view.room) return;
    keepingPlace(() => {
      for (const parent of parents) {
        for (const childId of room.children.get(parent.event_id) || []) {
          const old = view.els.get(childId);
          const child = room.byId.get(childId);
          if (!old || !child) continue;
          const fresh = renderItem(room, child);
          swapElement(old, fresh);
          view.els.set(childId, fresh);
        }
      }
    });
  }

  function showNewest(toBottom = true) {
    const room = view.room;
    view.end = room.items.length;
    view.start = Math.max(0, view.end - WINDOW_START);
    view.stuck = true;
    view.newBelow = 0;
    updateJumpButton();
    syncTimeline(toBottom);
  }

  /** Puts an item in the window and in the middle of the view; answers its element. */
  function showAround(room, id) {
    const index = room.items.findIndex((item) => item.event_id === id);
    if (index < 0) return null;
    if (index < view.start || index >= view.end) {
      view.start = Math.max(0, index - WINDOW_MAX / 2);
      view.end = Math.min(room.items.length, view.start + WINDOW_MAX);
      view.stuck = false;
      syncTimeline(false);
    }
    const el = view.els.get(id);
    if (el) el.scrollIntoView({ block: "center" });
    return el;
  }

  function highlight(el) {
    el.classList.add("highlight");
    el.focus({ preventScroll: true });
    setTimeout(() => el.classList.remove("highlight"), 2500);
  }

  /** Shows an event of the open room, loading older pages (up to 5,000 items) to reach it. */
  async function goToEvent(room, id) {
    for (let pages = 0; !room.byId.has(id) && room.hasOlder && pages < 10 && view.room === room; pages++) {
      showNote("Looking for the message in older pages…");
      await loadOlder(room, 500);
    }
    if (view.room !== room) return;
    const el = room.byId.has(id) ? showAround(room, id) : null;
    if (el) { highlight(el); clearError(); }
    else showNote("That message is older than what this page has loaded: scroll up to reach it.");
  }

  function updateJumpButton() {
    const button = $("jump-new");
    button.hidden = view.newBelow === 0;
    button.textContent = `${view.newBelow} new message${view.newBelow === 1 ? "" : "s"} ↓`;
  }

  /** A new item was appended to the open room's list. */
  function appendToView(room, item) {
    const length = room.items.length;
    const windowAtEnd = view.end === length - 1;
    if (windowAtEnd && view.stuck) {
      view.end = length;
      view.start = Math.max(view.start, view.end - WINDOW_MAX);
      syncTimeline(true);
      return;
    }
    if (windowAtEnd && view.end - view.start < WINDOW_MAX) { view.end = length; syncTimeline(false); }
    if (countsAsUnread(item)) { view.newBelow += 1; updateJumpButton(); }
  }

  function onTimelineScroll() {
    const room = view.room;
    if (!room) return;
    view.stuck = isAtBottom() && view.end === room.items.length;
    if (view.stuck && view.newBelow) { view.newBelow = 0; updateJumpButton(); }
    checkEdges();
    maybeMarkRead();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Rendering items

  function deliveryOf(item) {
    const known = state.delivery.get(item.event_id);
    if (known) return known;
    const mark = item.delivery;
    if (mark && (mark.state === "delivered" || mark.state === "read")) return { state: mark.state, mark };
    if (mark && mark.delivered > 0) return { state: "delivered", mark };
    return { state: item.local || item.pending ? "pending" : "sent" };
  }

  function deliveryElement(item) {
    const el = h("span", { class: "delivery" });
    setDelivery(el, deliveryOf(item));
    return el;
  }

  function setDelivery(el, delivery) {
    el.dataset.state = delivery.state;
    if (delivery.state === "pending") {
      el.textContent = "🕓";
      el.title = "Waiting for a transport to take it";
    } else if (delivery.state === "sent") {
      el.textContent = "✓";
      el.title = "Sent";
    } else if (delivery.state === "delivered" || delivery.state === "read") {
      const mark = delivery.mark;
      const verb = delivery.state === "read" ? "Read" : "Delivered";
      const partial = mark && (delivery.state === "read" ? mark.read : mark.delivered) < mark.devices;
      el.textContent = delivery.state === "read" ? "✓✓ read" : "✓✓";
      el.title = mark
        ? `${verb} by ${delivery.state === "read" ? mark.read : mark.delivered} of ${mark.devices} device(s)` + (partial ? " so far" : "")
        : `${verb} (by at least one device)`;
    } else {
      el.textContent = `⚠ not sent: ${delivery.reason || "the transport refused it"}`;
      el.title = delivery.retryAt ? `The node tries again at ${hhmm(new Date(delivery.retryAt))}` : "The node tries again";
    }
    el.setAttribute("aria-label", el.dataset.state === "failed" ? el.textContent : el.title);
  }

  function renderStateItem(item) {
    const el = h("div", { class: "item state", "data-event-id": item.event_id, tabindex: "-1" });
    el.append(fillText(h("span", { class: "summary", dir: "auto" }), item.summary, false), timeElement(item.timestamp_ms));
    return el;
  }

  function renderQuote(room, parentId) {
    const parent = room.byId.get(parentId);
    const quote = h("button", { type: "button", class: "reply-quote", "data-parent-id": parentId });
    if (!parent) {
      quote.textContent = "a message not held";
      quote.title = "The message this replies to is not loaded here: click to look for it";
      return quote;
    }
    const preview = previewText(parent, 140);
    quote.append(h("span", { class: "q-sender " + colourClass(parent.sender_id), text: parent.sender_id + ":" }), textNode(" "),
      fillText(h("span", { class: "q-text", dir: "auto" }), preview, false));
    quote.setAttribute("aria-label", `In reply to ${parent.sender_id}: ${preview}. Show it`);
    return quote;
  }

  /** A size for a person: bytes, KiB, MiB or GiB. */
  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} bytes`;
    const units = ["KiB", "MiB", "GiB"];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${value.toFixed(1)} ${units[unit]}`;
  }

  /** Still images the node shows inline (it serves anything else as a download). */
  const INLINE_IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
  const PREVIEW_MAX = 20 * 1024 * 1024;

  /** A shared file: its name, size and type, a link that saves it, and a small images' preview. */
  function renderFile(room, item) {
    const file = item.file;
    const url = `${roomPath(room.id)}/events/${seg(item.event_id)}/file`;
    const card = h("div", { class: "file-card" });
    const link = h("a", { class: "file-name", href: url, download: String(file.name), dir: "auto" });
    fillText(link, String(file.name), false);
    const dimensions = file.width && file.height ? `, ${file.width}×${file.height}` : "";
    card.append(link, h("span", { class: "file-meta", text: `${formatSize(Number(file.size) || 0)}, ${file.media_type}${dimensions}` }));
    if (INLINE_IMAGES.has(file.media_type) && Number(file.size) <= PREVIEW_MAX) {
      card.append(h("img", { src: url, alt: `Image ${file.name}`, loading: "lazy", width: file.width || null, height: file.height || null }));
    }
    return card;
  }

  function renderBody(room, item) {
    const body = h("div", { class: "body", dir: "auto" });
    if (item.redacted) { body.classList.add("redacted"); body.textContent = "message deleted"; return [body]; }
    if (item.undecryptable) { body.classList.add("undecryptable"); body.textContent = "encrypted message — waiting for the key"; return [body]; }
    if (item.msgtype === "file" && item.file) {
      const parts = [renderFile(room, item)];
      if (item.body && item.body !== item.file.name) parts.push(fillText(body, String(item.body)));
      return parts;
    }
    if (item.msgtype === "notice") body.classList.add("notice");
    const text = String(item.body ?? "").replace(/\r\n/g, "\n");
    const fill = (full) => {
      body.replaceChildren();
      if (item.msgtype === "emote") { body.classList.add("emote"); body.append(textNode(`* ${item.sender_id} `)); }
      fillText(body, full ? text : truncate(text, COLLAPSE_AT));
    };
    if (text.length <= COLLAPSE_AT) { fill(true); return [body]; }
    const more = h("button", { type: "button", class: "more small" });
    const show = (full) => {
      fill(full);
      more.textContent = full ? "Show less" : `Show all ${text.length.toLocaleString()} characters`;
      more.setAttribute("aria-expanded", String(full));
    };
    more.addEventListener("click", () => {
      const full = !room.expanded.has(item.event_id);
      if (full) room.expanded.add(item.event_id); else room.expanded.delete(item.event_id);
      show(full);
    });
    show(room.expanded.has(item.event_id));
    return [body, more];
  }

  function renderReactions(item) {
    const entries = Object.entries(item.reactions || {}).filter(([, users]) => Array.isArray(users) && users.length);
    if (!entries.length) return null;
    const box = h("div", { class: "reactions" });
    for (const [key, users] of entries) {
      const mine = users.includes(myId());
      const button = h("button", {
        type: "button", class: "reaction", "data-key": key, "aria-pressed": String(mine),
        title: `${users.join(", ")} reacted with ${key}${mine ? " (click to take yours back)" : ""}`,
      });
      button.append(fillText(h("span", { class: "reaction-key", dir: "auto" }), key, false), textNode(" " + users.length));
      box.append(button);
    }
    return box;
  }

  function renderActions(item, inThread) {
    const actions = [];
    const usable = !item.redacted && !item.undecryptable;
    if (!inThread && !item.redacted) actions.push(["reply", "Reply", "Reply"]);
    if (usable) actions.push(["react", "React", "Add a reaction"]);
    if (!inThread) actions.push(["thread", "Thread", "Open the thread"]);
    if (usable && isMine(item)) actions.push(["edit", "Edit", "Edit"], ["redact", "Delete", "Delete"]);
    const bar = h("div", { class: "actions", role: "group", "aria-label": "Message actions" });
    for (const [action, label, spoken] of actions) {
      bar.append(h("button", { type: "button", "data-action": action, "aria-label": spoken, tabindex: "-1", text: label }));
    }
    return bar;
  }

  function renderItem(room, item, inThread = false) {
    if (item.summary != null && item.type !== MESSAGE) return renderStateItem(item);
    const mine = isMine(item);
    const el = h("div", { class: "item msg" + (mine ? " mine" : ""), "data-event-id": item.event_id, tabindex: "-1" });
    if (item.parent_event_id && !(inThread && item.parent_event_id === view.threadRoot)) el.append(renderQuote(room, item.parent_event_id));
    const meta = h("div", { class: "meta" },
      h("span", { class: "sender " + colourClass(item.sender_id), text: item.sender_id }), timeElement(item.timestamp_ms));
    if (!item.redacted && (item.priority === "high" || item.priority === "urgent")) {
      meta.append(h("span", { class: "priority " + item.priority, title: `Sent with ${item.priority} priority`, text: item.priority }));
    }
    if (!item.redacted && item.forwarded) {
      const checks = {
        matches: ["checked", "Checked against the original, which this node holds"],
        differs: ["does not match the original", "This node holds the original, and it says otherwise: do not trust this forward"],
      };
      const [label, title] = checks[item.forwarded.check] || ["original not held", "This node does not hold the original, so it could not check it"];
      meta.append(h("span", { class: "forwarded " + (item.forwarded.check || "unavailable"), title, text: `forwarded from ${item.forwarded.sender_id}, ${label}` }));
    }
    if (item.edited) {
      const versions = (item.edits || []).length;
      meta.append(h("span", { class: "edited", title: versions ? `Edited; ${versions} earlier version${versions === 1 ? "" : "s"}` : "Edited", text: "(edited)" }));
    }
    if (mine) meta.append(deliveryElement(item));
    el.append(meta, ...renderBody(room, item));
    const reactions = item.redacted ? null : renderReactions(item);
    if (reactions) el.append(reactions);
    const replies = (room.children.get(item.event_id) || new Set()).size;
    if (replies && !inThread) el.append(h("button", { type: "button", class: "thread-count", text: `${replies} repl${replies === 1 ? "y" : "ies"}` }));
    el.append(renderActions(item, inThread));
    return el;
  }

  /** Roving focus: only the active item's actions are in the tab order. */
  function activateItem(el) {
    for (const old of document.querySelectorAll(".item.active")) {
      if (old === el) continue;
      old.classList.remove("active");
      for (const b of old.querySelectorAll(".actions button")) b.tabIndex = -1;
    }
    el.classList.add("active");
    for (const b of el.querySelectorAll(".actions button")) b.tabIndex = 0;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Opening rooms

  function renderHeader() {
    const room = view.room;
    $("no-room").hidden = !!room;
    $("invite-button").disabled = !room;
    $("leave-button").disabled = !room;
    $("composer").disabled = !room;
    $("attach").disabled = !room;
    $("send").disabled = !room;
    const title = $("room-title");
    const topic = $("room-topic");
    title.replaceChildren();
    topic.replaceChildren();
    if (!room) {
      title.textContent = "Parley";
      $("room-members").textContent = "";
      $("room-lock").hidden = true;
      updateDocumentTitle();
      return;
    }
    const s = room.summary;
    fillText(title, roomLabel(s), false);
    title.title = s.direct_peer ? `Direct messages with ${s.direct_peer} (${s.room_id})` : s.room_id;
    $("room-lock").hidden = !s.encrypted;
    $("room-members").textContent = `${s.members} member${s.members === 1 ? "" : "s"}` + (s.topic ? " ·" : "");
    if (s.topic) fillText(topic, s.topic);
    updateDocumentTitle();
  }

  function closeRoom() {
    leaveRoom();
    view.room = null;
    timeline().replaceChildren();
    renderHeader();
    renderTyping();
  }

  /** What leaving the open room for another needs: its draft kept, its typing notice ended, panels closed. */
  function leaveRoom() {
    const room = view.room;
    if (!room) return;
    if (compose.editId) endEdit();
    endReply();
    saveDraft(room);
    stopTyping();
    closeThread(false);
  }

  async function openRoom(id, { focus = false } = {}) {
    const room = state.rooms.get(id);
    if (!room) return;
    closeSidebar();
    if (view.room !== room) {
      leaveRoom();
      view.room = room;
      view.els = new Map();
      view.seps = new Map();
      view.newBelow = 0;
      view.markerId = null;
      updateJumpButton();
      storage.set("sessionStorage", "parley.room", id);
      renderRoomList();
      renderHeader();
      renderTyping();
      loadDraft(room);
      clearComposerError();
      timeline().setAttribute("aria-busy", "true");
      timeline().replaceChildren(h("p", { class: "top-note", text: "Loading…" }));
      const unreadAtOpen = room.summary.unread;
      if (!room.loaded) {
        try { await loadRoom(room); } catch (error) {
          if (view.room === room) timeline().replaceChildren(h("p", { class: "top-note", text: describeError(error) }));
          timeline().removeAttribute("aria-busy");
          showError(error, `Opening ${room.id}`);
          return;
        }
        if (view.room !== room) return;
      }
      view.markerId = firstUnreadId(room, unreadAtOpen);
      showNewest(true);
      scrollToMarker();
      timeline().removeAttribute("aria-busy");
      maybeMarkRead();
    }
    if (focus) $("composer").focus();
  }

  function firstUnreadId(room, unread) {
    if (!(unread > 0) || !room.items.length) return null;
    let count = 0;
    for (let i = room.items.length - 1; i >= 0; i--) {
      if (countsAsUnread(room.items[i]) && ++count === unread) return room.items[i].event_id;
    }
    return room.items[0].event_id;
  }

  function scrollToMarker() {
    const marker = view.marker;
    const tl = timeline();
    if (marker.isConnected && marker.offsetTop < tl.scrollTop) {
      tl.scrollTop = marker.offsetTop - 8;
      view.stuck = false;
    }
  }

  function loadRoom(room) {
    if (!room.loading) {
      room.loading = (async () => {
        try {
          const page = (await api("GET", `${roomPath(room.id)}/timeline?limit=${PAGE_SIZE}`)).items || [];
          resetItems(room, page);
          room.hasOlder = page.length >= PAGE_SIZE;
          for (const { item, isNew } of room.pending) if (isNew || room.byId.has(item.event_id)) storeItem(room, item);
          room.loaded = true;
        } finally {
          room.pending = [];
          room.loading = null;
        }
      })();
    }
    return room.loading;
  }

  /** After the stream was down: the newest page, merged when it meets what is loaded, else replacing it. */
  async function refreshNewest(room) {
    const page = (await api("GET", `${roomPath(room.id)}/timeline?limit=${PAGE_SIZE}`)).items || [];
    if (view.room !== room) return;
    const meets = page.length === 0 || room.byId.has(page[0].event_id) || room.items.length === 0;
    if (meets) {
      const windowAtEnd = view.end === room.items.length;
      let added = 0;
      for (const item of page) if (storeItem(room, item) && countsAsUnread(item)) added++;
      view.els = new Map(); // every item may have changed
      if (view.stuck) showNewest(true);
      else {
        if (windowAtEnd) { view.end = room.items.length; view.start = Math.max(view.start, view.end - WINDOW_MAX); }
        view.newBelow += added;
        updateJumpButton();
        syncTimeline(false);
      }
    } else {
      resetItems(room, page);
      room.hasOlder = page.length >= PAGE_SIZE;
      view.els = new Map();
      showNewest(true);
    }
    room.loaded = true;
    if (view.threadRoot) renderThread();
  }

  function moveRoom(step) {
    const ids = visibleRoomIds();
    if (!ids.length) return;
    const index = view.room ? ids.indexOf(view.room.id) : -1;
    const next = ids[(index + step + ids.length) % ids.length];
    openRoom(next);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Read markers

  let readTimer = null;

  /** The reader sees the newest item of the open room. */
  const readerSeesNewest = () => document.visibilityState === "visible" && document.hasFocus() && view.room && view.stuck;

  function maybeMarkRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(markRead, READ_DEBOUNCE_MS);
  }

  async function markRead() {
    const room = view.room;
    if (!room || !room.loaded || !readerSeesNewest()) return;
    const newest = room.items[room.items.length - 1];
    if (!newest || room.readPosted === newest.event_id) return;
    if (!(room.summary.unread > 0 || room.liveUnread > 0)) return;
    room.readPosted = newest.event_id;
    try {
      await api("POST", `${roomPath(room.id)}/read`, { event_id: newest.event_id });
      room.summary.unread = 0;
      room.summary.mentions = 0;
      room.liveUnread = 0;
      queueRoomList();
    } catch (error) {
      room.readPosted = null;
      showError(error, "Marking the room read");
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The stream

  const stream = { socket: null, delay: RETRY_FIRST_MS, timer: null, everUp: false };

  function connect() {
    clearTimeout(stream.timer);
    setConnection("connecting", stream.everUp ? "Reconnecting…" : "Connecting…");
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/stream`;
    let socket;
    try { socket = new WebSocket(url); } catch { scheduleReconnect(); return; }
    stream.socket = socket;
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message && typeof message.type === "string") onStreamMessage(message, socket);
    });
    socket.addEventListener("close", () => {
      if (stream.socket !== socket) return;
      stream.socket = null;
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const wait = Math.round(stream.delay * (0.8 + Math.random() * 0.4)); // jitter: many pages never retry in step
    stream.delay = Math.min(RETRY_MAX_MS, stream.delay * 2);
    setConnection("down", `Reconnecting… (next try in ${(wait / 1000).toFixed(1)} s)`);
    stream.timer = setTimeout(connect, wait);
  }

  /** "Connected" is said once the page shows what the node holds: after the first load, or the reload that follows a drop. */
  async function onReady(socket) {
    const reconnected = stream.everUp;
    stream.everUp = true;
    stream.delay = RETRY_FIRST_MS;
    if (!startup.done) await initialLoad();
    else if (reconnected) await reloadAfterDrop();
    if (stream.socket === socket) setConnection("up", "Connected");
  }

  async function reloadAfterDrop() {
    // What happened while the stream was down is only in the API: rooms not open are reloaded when opened.
    for (const room of state.rooms.values()) if (room !== view.room) room.loaded = false;
    try {
      await reloadRooms();
      if (view.room) await refreshNewest(view.room);
      if (state.nodeDown) clearError();
    } catch (error) {
      showError(error, "Reloading after the connection came back");
    }
  }

  function onStreamMessage(message, socket) {
    const room = message.room_id ? state.rooms.get(message.room_id) : null;
    switch (message.type) {
      case "ready": onReady(socket); break;
      case "item:new": onItemNew(message.room_id, room, message.item); break;
      case "item:changed": if (room && message.item) onItemChanged(room, message.item); break;
      case "room:changed": if (room) { refreshSummary(room); scheduleSealedRefresh(room); } else scheduleRoomReload(); break;
      case "sync:done": if (room) scheduleSealedRefresh(room); break;
      case "receipt": if (room && room !== view.room) scheduleSummaryRefresh(room); break;
      case "typing": if (room && message.user_id !== myId()) onTyping(room, message.user_id, message.typing); break;
      case "message:sent": setDeliveries(message.event_ids, { state: "sent" }); break;
      case "message:delivered": setDeliveries(message.event_ids, { state: "delivered" }); break;
      case "message:acknowledged": setDeliveries(message.event_ids, { state: "read" }); break;
      case "message:failed":
        setDeliveries(message.event_ids, { state: "failed", reason: message.reason, retryAt: message.retry_at_ms });
        break;
      case "sync:failed":
        showNote(`Syncing ${message.room_id} through ${message.transport} failed: ${message.reason}. The node tries again` +
          (message.retry_at_ms ? ` at ${hhmm(new Date(message.retry_at_ms))}.` : "."));
        break;
      default: break;
    }
  }

  function onItemNew(roomId, room, item) {
    if (!item || !item.event_id) return;
    if (!room) { scheduleRoomReload(); return; }
    const known = room.byId.has(item.event_id);
    if (isMine(item) && !state.delivery.has(item.event_id)) state.delivery.set(item.event_id, { state: "pending" });
    if (!known) noteNewItem(room, item);
    if (room.loading) { room.pending.push({ item, isNew: true }); return; }
    if (!room.loaded) return;
    const isNew = storeItem(room, item);
    if (room !== view.room) return;
    if (isNew) appendToView(room, item); else refreshItem(room, item.event_id);
    scheduleSealedRefresh(room);
    if (item.parent_event_id) refreshItem(room, item.parent_event_id); // its reply count, and the thread when open
    maybeMarkRead();
  }

  /** The room list's side of a new item: last message, order, unread counts, a notification. */
  function noteNewItem(room, item) {
    const s = room.summary;
    s.last = item;
    moveRoomToFront(room);
    if (countsAsUnread(item)) {
      room.liveUnread += 1;
      const seen = room === view.room && readerSeesNewest();
      if (!seen) {
        s.unread = (s.unread || 0) + 1;
        if (mentionsMe(item.body)) s.mentions = (s.mentions || 0) + 1;
        scheduleSummaryRefresh(room); // the node's count is exact (a sealed message's mention shows once opened)
      }
      notify(room, item);
    }
    queueRoomList();
  }

  // A room key that arrives opens sealed items without a message of the stream naming them: after anything that may
  // have brought one, the sealed items the page shows are asked for again.
  const sealedTimers = new Map();
  function scheduleSealedRefresh(room) {
    if (!room.loaded || !room.items.some((item) => item.undecryptable)) return;
    clearTimeout(sealedTimers.get(room.id));
    sealedTimers.set(room.id, setTimeout(() => { sealedTimers.delete(room.id); refreshSealed(room); }, 800));
  }

  async function refreshSealed(room) {
    const sealed = room.items.reduce((found, item, index) => (item.undecryptable ? [...found, index] : found), []);
    if (!sealed.length) return;
    const after = room.items[sealed[sealed.length - 1] + 1];
    const limit = Math.min(1000, sealed[sealed.length - 1] - sealed[0] + 1);
    try {
      const query = `?limit=${limit}` + (after ? `&before=${seg(after.event_id)}` : "");
      const page = (await api("GET", `${roomPath(room.id)}/timeline${query}`)).items || [];
      for (const item of page) {
        const old = room.byId.get(item.event_id);
        if (old && old.undecryptable && !item.undecryptable) { storeItem(room, item); refreshItem(room, item.event_id); }
      }
    } catch (error) {
      if (error.code !== "network") showError(error, "Opening encrypted messages");
    }
  }

  function onItemChanged(room, item) {
    if (room.summary.last && room.summary.last.event_id === item.event_id) { room.summary.last = item; queueRoomList(); }
    if (room.loading) { room.pending.push({ item, isNew: false }); return; }
    if (!room.loaded || !room.byId.has(item.event_id)) return;
    // The stream's items do not say whether they are still pending: what the timeline said stays.
    const before = room.byId.get(item.event_id);
    storeItem(room, { ...item, pending: before.pending, local: before.local });
    refreshItem(room, item.event_id);
  }

  function setDeliveries(ids, delivery) {
    for (const id of ids || []) {
      const current = state.delivery.get(id);
      // A failure after success would be another event of the same id; success after failure is the retry. Marks only
      // move forward: a late "sent" never hides "delivered", nor "delivered" "read".
      const rank = { pending: 0, failed: 0, sent: 1, delivered: 2, read: 3 };
      if (current && rank[delivery.state] < rank[current.state]) continue;
      state.delivery.set(id, delivery);
      for (const el of document.querySelectorAll(`.item[data-event-id="${CSS.escape(id)}"] .delivery`)) setDelivery(el, delivery);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Typing

  const typing = { roomId: null, on: false, lastSent: 0 };

  function postTyping(room, on) {
    typing.roomId = room.id;
    typing.on = on;
    typing.lastSent = Date.now();
    api("POST", `${roomPath(room.id)}/typing`, { typing: on }).catch(() => { /* a lost typing notice matters little */ });
  }

  function onComposerTyping() {
    const room = view.room;
    if (!room || compose.editId) return;
    const hasText = $("composer").value.trim() !== "";
    if (hasText && (!typing.on || Date.now() - typing.lastSent > TYPING_RESEND_MS)) postTyping(room, true);
    else if (!hasText && typing.on) postTyping(room, false);
  }

  function stopTyping() {
    if (!typing.on) return;
    const room = state.rooms.get(typing.roomId);
    typing.on = false;
    if (room) postTyping(room, false);
  }

  function onTyping(room, userId, on) {
    clearTimeout(room.typing.get(userId));
    if (on) {
      room.typing.set(userId, setTimeout(() => { room.typing.delete(userId); if (room === view.room) renderTyping(); }, TYPING_EXPIRES_MS));
    } else {
      room.typing.delete(userId);
    }
    if (room === view.room) renderTyping();
  }

  function renderTyping() {
    const names = view.room ? [...view.room.typing.keys()].sort() : [];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    $("typing").textContent = text;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Composer: sending, editing, replying, drafts

  const compose = { editId: null, replyTo: null, stash: null, sending: false };
  const draftKey = (room) => "parley.draft." + room.id;

  function saveDraft(room) {
    if (!compose.editId) storage.set("sessionStorage", draftKey(room), $("composer").value);
  }

  function loadDraft(room) {
    $("composer").value = storage.get("sessionStorage", draftKey(room)) || "";
  }

  function clearComposerError() { $("composer-error").hidden = true; }

  function showComposerError(error, what) {
    const el = $("composer-error");
    el.textContent = `${what}: ${describeError(error)} Your text is kept: press Enter to try again.`;
    el.hidden = false;
    showError(error, what);
  }

  /** "/me text" is an emote; "//text" sends a text starting with "/". */
  function parseComposer(raw) {
    const emote = /^\/me\s+([\s\S]*\S[\s\S]*)$/.exec(raw);
    if (emote) return { text: emote[1], msgtype: "emote" };
    if (raw.startsWith("//")) return { text: raw.slice(1), msgtype: "text" };
    return { text: raw, msgtype: "text" };
  }

  /** Sends and shows the message at once; the stream's copy replaces it (same event id). */
  async function sendMessage(room, raw, replyTo) {
    const { text, msgtype } = parseComposer(raw);
    const answer = await api("POST", `${roomPath(room.id)}/messages`, { text, msgtype, reply_to: replyTo || undefined });
    if (!state.delivery.has(answer.event_id)) state.delivery.set(answer.event_id, { state: "pending" });
    if (room.loaded && !room.byId.has(answer.event_id)) {
      const item = {
        event_id: answer.event_id, sender_id: myId(), timestamp_ms: Date.now(), type: MESSAGE, msgtype, body: text,
        edited: false, redacted: false, reactions: {}, parent_event_id: replyTo || null, local: true,
      };
      storeItem(room, item);
      noteNewItem(room, item);
      if (room === view.room) {
        showNewest(true);
        if (replyTo) refreshItem(room, replyTo);
      }
    }
    return answer;
  }

  /**
   * Shares files in the open room: each is sent to the node as it is (the node seals it into blocks), with a
   * progress bar and a button that cancels it; the stream brings the message back. Text typed in the composer
   * becomes the caption of a single file (and the reply being written makes it a reply), as it would be sent.
   */
  function uploadFiles(files) {
    const room = view.room;
    if (!room || files.length === 0) return;
    const box = $("composer");
    let caption = "";
    let replyTo = null;
    if (files.length === 1 && !compose.editId) {
      caption = box.value.trim();
      replyTo = compose.replyTo;
      if (caption) { box.value = ""; saveDraft(room); }
      endReply();
    }
    for (const file of files) uploadFile(room, file, caption, replyTo);
  }

  function uploadFile(room, file, caption, replyTo) {
    const row = h("div", { class: "upload" });
    const bar = h("progress", { max: "1", value: "0", "aria-label": `Uploading ${file.name}` });
    const label = h("span", { dir: "auto" });
    fillText(label, `${file.name} (${formatSize(file.size)})` + (caption ? ` — ${caption}` : ""), false);
    const cancel = h("button", { type: "button", class: "upload-cancel", "aria-label": `Cancel the upload of ${file.name}`, text: "Cancel" });
    row.append(bar, label, cancel);
    $("uploads").append(row);
    const request = new XMLHttpRequest();
    let query = `name=${encodeURIComponent(file.name)}`;
    if (caption) query += `&caption=${encodeURIComponent(caption)}`;
    if (replyTo) query += `&reply_to=${encodeURIComponent(replyTo)}`;
    request.open("POST", `${roomPath(room.id)}/files?${query}`);
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.upload.addEventListener("progress", (event) => { if (event.lengthComputable) bar.value = event.loaded / event.total; });
    // Cut off before the node has it all, nothing is shared: the node drops what it received.
    cancel.addEventListener("click", () => { request.abort(); row.remove(); });
    request.addEventListener("load", () => {
      row.remove();
      if (request.status >= 200 && request.status < 300) return;
      let error = null;
      try { error = JSON.parse(request.responseText).error; } catch { error = null; }
      const message = error && typeof error.message === "string" ? error.message : `The node answered ${request.status}.`;
      showComposerError(new ApiError(error ? error.code : "http", message, error && error.remedy, [], request.status), `${file.name} was not shared`);
    });
    request.addEventListener("error", () => {
      row.remove();
      showComposerError(new ApiError("network", NODE_DOWN, NODE_DOWN_REMEDY), `${file.name} was not shared`);
    });
    request.send(file);
  }

  async function submitComposer() {
    const room = view.room;
    const box = $("composer");
    const raw = box.value;
    if (!room || compose.sending || raw.trim() === "") return;
    compose.sending = true;
    $("send").disabled = true;
    try {
      if (compose.editId) {
        await saveEdit(room, compose.editId, raw);
      } else {
        await sendMessage(room, raw, compose.replyTo);
        if (view.room === room) { box.value = ""; endReply(); }
        storage.set("sessionStorage", draftKey(room), "");
        stopTyping();
      }
      clearComposerError();
    } catch (error) {
      showComposerError(error, compose.editId ? "The edit was not saved" : "The message was not sent");
    } finally {
      compose.sending = false;
      $("send").disabled = !view.room;
    }
  }

  async function saveEdit(room, id, text) {
    const item = room.byId.get(id);
    if (item && item.body === text) { endEdit(); return; }
    await api("POST", `${roomPath(room.id)}/events/${seg(id)}/edit`, { text });
    const current = room.byId.get(id);
    if (current) { storeItem(room, { ...current, body: text, edited: true }); refreshItem(room, id); }
    endEdit();
  }

  function startEdit(item) {
    if (!compose.editId) compose.stash = $("composer").value;
    endReply();
    stopTyping();
    compose.editId = item.event_id;
    const box = $("composer");
    box.value = item.body || "";
    $("edit-bar").hidden = false;
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function endEdit() {
    if (!compose.editId) return;
    compose.editId = null;
    $("composer").value = compose.stash || "";
    compose.stash = null;
    $("edit-bar").hidden = true;
  }

  function startReply(item) {
    if (compose.editId) endEdit();
    compose.replyTo = item.event_id;
    const text = $("reply-text");
    text.replaceChildren(textNode("Replying to "), h("strong", { text: item.sender_id }), textNode(": "));
    fillText(text, previewText(item, 120), false);
    $("reply-bar").hidden = false;
    $("composer").focus();
  }

  function endReply() {
    compose.replyTo = null;
    $("reply-bar").hidden = true;
  }

  function editLastOwnMessage() {
    const room = view.room;
    if (!room) return false;
    for (let i = room.items.length - 1; i >= 0; i--) {
      const item = room.items[i];
      if (isMine(item) && item.type === MESSAGE && !item.redacted && !item.undecryptable && item.summary == null) {
        startEdit(item);
        return true;
      }
    }
    return false;
  }

  function onComposerKeydown(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitComposer();
    } else if (event.key === "ArrowUp" && $("composer").value === "" && !event.altKey && !compose.editId) {
      if (editLastOwnMessage()) event.preventDefault();
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Message actions

  function onItemsClick(event) {
    if (event.target.closest(".load-older")) { extendUp(); return; }
    const el = event.target.closest(".item");
    const room = view.room;
    const item = el && room ? room.byId.get(el.dataset.eventId) : null;
    if (!item) return;
    const action = event.target.closest("[data-action]");
    const reaction = event.target.closest("button.reaction");
    const quote = event.target.closest(".reply-quote");
    if (action) runAction(action.dataset.action, room, item);
    else if (reaction) react(room, item.event_id, reaction.dataset.key);
    else if (quote) goToEvent(room, quote.dataset.parentId);
    else if (event.target.closest(".thread-count")) openThread(item.event_id);
  }

  function runAction(action, room, item) {
    if (action === "reply") startReply(item);
    else if (action === "react") openReactPicker(room, item);
    else if (action === "thread") openThread(item.event_id);
    else if (action === "edit") startEdit(item);
    else if (action === "redact") redact(room, item);
  }

  async function react(room, id, key) {
    const item = room.byId.get(id);
    const users = item && item.reactions && item.reactions[key];
    if (users && users.includes(myId())) {
      try {
        await api("POST", `${roomPath(room.id)}/events/${seg(id)}/reactions/remove`, { key });
        const current = room.byId.get(id);
        if (current) {
          const reactions = { ...(current.reactions || {}) };
          const others = (reactions[key] || []).filter((user) => user !== myId());
          if (others.length) reactions[key] = others; else delete reactions[key];
          const records = (current.reaction_events || []).filter((r) => !(r.key === key && r.sender_id === myId()));
          storeItem(room, { ...current, reactions, reaction_events: records });
          refreshItem(room, id);
        }
      } catch (error) {
        showError(error, "The reaction was not taken back");
      }
      return;
    }
    try {
      const event = await api("POST", `${roomPath(room.id)}/events/${seg(id)}/reactions`, { key });
      const current = room.byId.get(id);
      if (current) {
        const reactions = { ...(current.reactions || {}) };
        const list = reactions[key] || [];
        if (!list.includes(myId())) reactions[key] = [...list, myId()].sort();
        const records = [...(current.reaction_events || [])];
        if (event && event.event_id) records.push({ event_id: event.event_id, key, sender_id: myId() });
        storeItem(room, { ...current, reactions, reaction_events: records });
        refreshItem(room, id);
      }
    } catch (error) {
      showError(error, "The reaction was not sent");
    }
  }

  async function redact(room, item) {
    if (!(await confirmAction("Delete this message? Its text is removed for everyone whose node applies the deletion.", "Delete"))) return;
    try {
      await api("POST", `${roomPath(room.id)}/events/${seg(item.event_id)}/redact`, {});
      const current = room.byId.get(item.event_id);
      if (current) {
        const { body: _body, ...rest } = current;
        storeItem(room, { ...rest, redacted: true, reactions: {} });
        refreshItem(room, item.event_id);
      }
      if (compose.editId === item.event_id) endEdit();
    } catch (error) {
      showError(error, "The message was not deleted");
    }
  }

  /** Arrow keys move between items (the timeline is one stop in the tab order). */
  function onItemsKeydown(event, container) {
    if (!["ArrowUp", "ArrowDown", "Home", "End"].includes(event.key) || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target !== container && !event.target.classList.contains("item") && !event.target.closest(".actions")) return;
    const items = [...container.querySelectorAll(":scope > .item")];
    if (!items.length) return;
    const current = event.target.closest(".item");
    let index = current ? items.indexOf(current) : items.length;
    if (event.key === "ArrowUp") index = Math.max(0, index - 1);
    else if (event.key === "ArrowDown") index = Math.min(items.length - 1, current ? index + 1 : items.length - 1);
    else if (event.key === "Home") index = 0;
    else index = items.length - 1;
    event.preventDefault();
    items[index].focus();
    items[index].scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Thread panel

  function openThread(rootId) {
    const room = view.room;
    if (!room || !room.byId.has(rootId)) return;
    view.threadRoot = rootId;
    view.threadOpener = document.activeElement;
    $("thread").hidden = false;
    $("thread-error").hidden = true;
    renderThread();
    $("thread-composer").focus();
  }

  function renderThread() {
    const room = view.room;
    const rootId = view.threadRoot;
    const box = $("thread-items");
    if (!room || !rootId) return;
    const root = room.byId.get(rootId);
    if (!root) { closeThread(false); return; }
    const focused = document.activeElement && box.contains(document.activeElement) ? document.activeElement : null;
    const focusId = focused && focused.closest(".item") ? focused.closest(".item").dataset.eventId : null;
    const focusAction = focused && focused.dataset.action;
    const replies = room.items.filter((item) => item.parent_event_id === rootId);
    box.replaceChildren(renderItem(room, root, true), ...replies.map((item) => renderItem(room, item, true)));
    if (!replies.length) box.append(h("p", { class: "muted", text: "No replies loaded yet." }));
    if (focusId) {
      const el = box.querySelector(`.item[data-event-id="${CSS.escape(focusId)}"]`);
      const target = el && (focusAction ? el.querySelector(`[data-action="${focusAction}"]`) : el);
      if (target) target.focus({ preventScroll: true });
    }
    box.scrollTop = box.scrollHeight;
  }

  function closeThread(returnFocus = true) {
    if (!view.threadRoot) return;
    view.threadRoot = null;
    $("thread").hidden = true;
    $("thread-items").replaceChildren();
    const opener = view.threadOpener;
    view.threadOpener = null;
    if (returnFocus) (opener && opener.isConnected ? opener : $("composer")).focus();
  }

  async function submitThread() {
    const room = view.room;
    const box = $("thread-composer");
    const rootId = view.threadRoot;
    if (!room || !rootId || box.value.trim() === "" || box.dataset.sending) return;
    box.dataset.sending = "1";
    $("thread-send").disabled = true;
    try {
      await sendMessage(room, box.value, rootId);
      box.value = "";
      $("thread-error").hidden = true;
      renderThread();
    } catch (error) {
      const el = $("thread-error");
      el.textContent = `The reply was not sent: ${describeError(error)} Your text is kept.`;
      el.hidden = false;
    } finally {
      delete box.dataset.sending;
      $("thread-send").disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Dialogs

  const returnFocus = new WeakMap();

  function openDialog(dialog, focusTarget) {
    returnFocus.set(dialog, document.activeElement);
    dialog.showModal();
    if (focusTarget) focusTarget.focus();
  }

  function setUpDialogs() {
    for (const dialog of document.querySelectorAll("dialog")) {
      dialog.addEventListener("close", () => {
        const target = returnFocus.get(dialog);
        returnFocus.delete(dialog);
        if (target && target.isConnected && typeof target.focus === "function") target.focus();
      });
      for (const cancel of dialog.querySelectorAll(".dialog-cancel")) cancel.addEventListener("click", () => dialog.close());
    }
  }

  let confirmResolve = null;

  function confirmAction(text, okLabel) {
    if (confirmResolve) confirmResolve(false);
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      confirmResolve = resolve;
      openDialog($("confirm-dialog"), $("confirm-dialog").querySelector(".dialog-cancel"));
    });
  }

  function settleConfirm(answer) {
    const resolve = confirmResolve;
    confirmResolve = null;
    if (resolve) resolve(answer);
  }

  const picker = { room: null, id: null };

  function openReactPicker(room, item) {
    picker.room = room;
    picker.id = item.event_id;
    const box = $("react-emoji");
    if (!box.children.length) {
      for (const emoji of COMMON_EMOJI) box.append(h("button", { type: "button", "data-key": emoji, "aria-label": `React with ${emoji}`, text: emoji }));
    }
    $("react-custom").value = "";
    openDialog($("react-picker"), box.firstElementChild);
  }

  function pickReaction(key) {
    const { room, id } = picker;
    $("react-picker").close();
    if (room && id && key) react(room, id, key);
  }

  function openNewRoom() {
    $("new-room-form").reset();
    $("new-room-error").hidden = true;
    openDialog($("new-room-dialog"), $("new-room-id"));
  }

  const ROOM_ID_RE = /^(?!\.)(?!.*\.\.)[a-z0-9._=-]{1,64}$/;

  async function createRoom() {
    const id = $("new-room-id").value.trim();
    const name = $("new-room-name").value.trim();
    const error = $("new-room-error");
    if (!ROOM_ID_RE.test(id)) {
      error.textContent = "A room id is 1 to 64 lower-case letters, digits, dots, underscores, = or -, not starting with a dot and without “..”.";
      error.hidden = false;
      $("new-room-id").focus();
      return;
    }
    $("new-room-create").disabled = true;
    try {
      const bucket = $("new-room-bucket").value.trim() || undefined;
      const summary = await api("POST", "/v1/rooms", { room_id: id, name: name || undefined, encrypted: $("new-room-encrypted").checked, bucket });
      if (!state.rooms.has(summary.room_id)) state.rooms.set(summary.room_id, newRoom(summary));
      state.order = [summary.room_id, ...state.order.filter((r) => r !== summary.room_id)];
      $("new-room-dialog").close();
      renderRoomList();
      await openRoom(summary.room_id, { focus: true });
    } catch (failure) {
      error.textContent = describeError(failure);
      error.hidden = false;
    } finally {
      $("new-room-create").disabled = false;
    }
  }

  async function joinRoom() {
    const input = $("join-code");
    const code = input.value.trim();
    if (!code) { showNote("Paste an invite code (parley-invite:…) to join its room."); input.focus(); return; }
    $("join-button").disabled = true;
    try {
      const answer = await api("POST", "/v1/join", { code });
      input.value = "";
      await reloadRooms();
      showNote(`Joined ${answer.room_id}.`);
      await openRoom(answer.room_id, { focus: true });
    } catch (error) {
      showError(error, "Joining failed");
    } finally {
      $("join-button").disabled = false;
    }
  }

  async function leaveCurrentRoom() {
    const room = view.room;
    if (!room) return;
    const label = roomLabel(room.summary);
    const sure = await confirmAction(`Leave ${label}? Its new messages stop reaching you; to come back, someone invites you again.`, "Leave");
    if (!sure) return;
    try {
      await api("POST", `${roomPath(room.id)}/leave`, {});
      showNote(`You left ${label}.`);
      await reloadRooms();
    } catch (error) {
      showError(error, "Leaving the room");
    }
  }

  function openDirectMessage() {
    $("dm-form").reset();
    $("dm-error").hidden = true;
    openDialog($("dm-dialog"), $("dm-user"));
  }

  async function startDirectMessage() {
    const userId = $("dm-user").value.trim();
    const key = $("dm-key").value.trim();
    const bucket = $("dm-bucket").value.trim();
    const error = $("dm-error");
    error.hidden = true;
    const body = { user_id: userId };
    if (key) body.signing_key = key;
    if (bucket) body.bucket = bucket;
    $("dm-start").disabled = true;
    try {
      const answer = await api("POST", "/v1/dms", body);
      $("dm-dialog").close();
      await reloadRooms();
      await openRoom(answer.room_id, { focus: true });
      if (answer.invite_code) showNote(`Give ${userId} this code to join the conversation: ${answer.invite_code}`);
    } catch (failure) {
      error.textContent = describeError(failure);
      error.hidden = false;
    } finally {
      $("dm-start").disabled = false;
    }
  }

  function openInvite() {
    if (!view.room) return;
    $("invite-form").reset();
    $("invite-room").textContent = roomLabel(view.room.summary);
    $("invite-error").hidden = true;
    $("invite-result").hidden = true;
    $("invite-code").textContent = "";
    openDialog($("invite-dialog"), $("invite-user"));
  }

  async function sendInvite() {
    const room = view.room;
    const userId = $("invite-user").value.trim();
    const key = $("invite-key").value.trim();
    const error = $("invite-error");
    error.hidden = true;
    if (!room || !userId || !key) {
      error.textContent = "Give their user id and their signing key (they see both under “You”, or run `parley whoami`).";
      error.hidden = false;
      return;
    }
    $("invite-send").disabled = true;
    try {
      const answer = await api("POST", `${roomPath(room.id)}/invite`, { user_id: userId, signing_key: key });
      const code = answer.invite_code;
      $("invite-result").hidden = false;
      $("invite-code-row").hidden = !code;
      $("invite-code").textContent = code || "";
      $("invite-result-text").textContent = code
        ? `${userId} is invited. Give them this code to join with:`
        : `${userId} is invited. This room lives on this node only (no bucket or relay), so there is no code: ` +
          "they can join once they hold its events.";
      if (code) $("invite-copy").focus();
    } catch (failure) {
      error.textContent = describeError(failure);
      error.hidden = false;
    } finally {
      $("invite-send").disabled = false;
    }
  }

  async function copyFrom(source, button) {
    const text = source.textContent;
    const original = button.textContent;
    const flash = (label) => { button.textContent = label; setTimeout(() => { button.textContent = original; }, 1800); };
    try {
      await navigator.clipboard.writeText(text);
      flash("Copied");
    } catch {
      // Without clipboard access, select the text so that Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      flash("Selected: press Ctrl+C");
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Search

  const search = { seq: 0, timer: null };

  async function runSearch() {
    const query = $("search-input").value.trim();
    const seq = ++search.seq;
    if (!query) { closeSearch(false); return; }
    $("search-panel").hidden = false;
    $("search-note").textContent = "Searching…";
    const onlyHere = $("search-this-room").checked && view.room;
    const path = `/v1/search?q=${encodeURIComponent(query)}&limit=50` + (onlyHere ? `&room=${encodeURIComponent(view.room.id)}` : "");
    try {
      const hits = await api("GET", path);
      if (seq !== search.seq) return;
      renderSearchResults(hits || []);
    } catch (error) {
      if (seq !== search.seq) return;
      $("search-results").replaceChildren();
      $("search-note").textContent = describeError(error);
    }
  }

  function renderSearchResults(hits) {
    $("search-note").textContent = hits.length ? `${hits.length} result${hits.length === 1 ? "" : "s"}` : "No message holds every word.";
    const list = $("search-results");
    list.replaceChildren(...hits.map((hit) => {
      const room = state.rooms.get(hit.room_id);
      const roomName = room ? roomLabel(room.summary) : hit.room_id;
      const meta = h("span", { class: "result-meta" });
      fillText(meta, `${roomName} · ${hit.sender_id} · ${new Date(hit.timestamp_ms).toLocaleString()}`, false);
      const text = fillText(h("span", { class: "result-text", dir: "auto" }), previewText(hit, 300), false);
      const button = h("button", { type: "button" }, meta, text);
      return h("li", { "data-room-id": hit.room_id, "data-event-id": hit.event_id }, button);
    }));
  }

  async function openSearchResult(li) {
    const roomId = li.dataset.roomId;
    const eventId = li.dataset.eventId;
    if (!state.rooms.has(roomId)) { showNote(`This node no longer lists ${roomId}.`); return; }
    closeSearch(false);
    await openRoom(roomId);
    const room = state.rooms.get(roomId);
    if (room && view.room === room && room.loaded) await goToEvent(room, eventId);
  }

  function closeSearch(returnFocus = true) {
    $("search-panel").hidden = true;
    search.seq++;
    if (returnFocus) $("search-input").focus();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Theme, notifications, identity

  const THEMES = ["system", "light", "dark"];
  const systemDark = matchMedia("(prefers-color-scheme: dark)");

  function applyTheme() {
    const choice = THEMES.includes(storage.get("localStorage", "parley.theme")) ? storage.get("localStorage", "parley.theme") : "system";
    const effective = choice === "system" ? (systemDark.matches ? "dark" : "light") : choice;
    document.documentElement.dataset.theme = effective;
    const button = $("theme-toggle");
    button.textContent = { system: "◐", light: "☀", dark: "☾" }[choice];
    button.setAttribute("aria-label", `Theme: ${choice}${choice === "system" ? ` (${effective})` : ""}. Change theme`);
    button.title = `Theme: ${choice}${choice === "system" ? ` (${effective})` : ""}`;
  }

  function cycleTheme() {
    const current = storage.get("localStorage", "parley.theme") || "system";
    const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
    storage.set("localStorage", "parley.theme", next === "system" ? null : next);
    applyTheme();
  }

  function updateNotifyButton() {
    const button = $("notify-button");
    if (!("Notification" in window)) { button.disabled = true; button.textContent = "No notifications in this browser"; return; }
    const permission = Notification.permission;
    button.disabled = permission !== "default";
    button.textContent = { granted: "Notifications on", denied: "Notifications blocked", default: "Notify me" }[permission] || "Notify me";
    button.title = permission === "denied" ? "Allow notifications for this page in the browser's site settings." : "";
  }

  function notify(room, item) {
    if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
    // Notifications take plain text; direction controls are removed so that they cannot reorder it.
    const plain = (s) => String(s).replace(SPECIAL_RE, "\ufffd");
    try {
      const note = new Notification(plain(`${item.sender_id} · ${roomLabel(room.summary)}`), { body: plain(previewText(item, 140)), tag: "parley-" + room.id });
      note.addEventListener("click", () => { window.focus(); openRoom(room.id); note.close(); });
    } catch { /* some browsers allow notifications only from a service worker */ }
  }

  async function loadMe() {
    state.me = await api("GET", "/v1/me");
    $("me-user-id").textContent = state.me.user_id;
    $("me-signing-key").textContent = state.me.signing_key;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Panels and keyboard

  const isPhone = () => matchMedia("(max-width: 480px)").matches;

  function toggleSidebar(open) {
    const sidebar = $("sidebar");
    const show = open ?? !sidebar.classList.contains("open");
    sidebar.classList.toggle("open", show);
    $("rooms-toggle").setAttribute("aria-expanded", String(show));
    $("rooms-toggle").setAttribute("aria-label", show ? "Hide rooms" : "Show rooms");
    if (show && isPhone()) $("room-filter").focus();
  }

  function closeSidebar() {
    if ($("sidebar").classList.contains("open")) toggleSidebar(false);
  }

  function onEscape() {
    if (view.threadRoot && $("thread").contains(document.activeElement)) { closeThread(); return true; }
    if (compose.editId) { endEdit(); $("composer").focus(); return true; }
    if (compose.replyTo) { endReply(); $("composer").focus(); return true; }
    if (view.threadRoot) { closeThread(); return true; }
    if (!$("search-panel").hidden) { closeSearch(); return true; }
    if ($("sidebar").classList.contains("open")) { toggleSidebar(false); $("rooms-toggle").focus(); return true; }
    return false;
  }

  function onGlobalKeydown(event) {
    if (document.querySelector("dialog[open]")) return; // a dialog handles its own keys
    const mod = event.ctrlKey || event.metaKey;
    if (mod && !event.altKey && event.key.toLowerCase() === "k") {
      event.preventDefault();
      if (isPhone()) toggleSidebar(true);
      $("room-filter").focus();
      $("room-filter").select();
    } else if (event.altKey && !mod && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      moveRoom(event.key === "ArrowUp" ? -1 : 1);
    } else if (event.key === "Escape") {
      if (onEscape()) event.preventDefault();
    } else if (!mod && !event.altKey && !isTextField(event.target)) {
      if (event.key === "/" && view.room) { event.preventDefault(); $("composer").focus(); }
      else if (event.key === "?") { event.preventDefault(); openDialog($("help-dialog"), $("help-dialog").querySelector(".dialog-cancel")); }
    }
  }

  function onRoomFilterKeydown(event) {
    const ids = visibleRoomIds();
    if (event.key === "Enter") {
      event.preventDefault();
      if (ids.length) openRoom(ids[0], { focus: true });
    } else if (event.key === "Escape" && event.target.value) {
      event.preventDefault();
      event.stopPropagation();
      event.target.value = "";
      applyRoomFilter();
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Wiring

  function on(id, type, handler, options) { $(id).addEventListener(type, handler, options); }

  function submitHandler(handler) {
    return (event) => { event.preventDefault(); handler(event); };
  }

  function bindEvents() {
    setUpDialogs();
    document.addEventListener("keydown", onGlobalKeydown);
    on("rooms-toggle", "click", () => toggleSidebar());
    on("rooms-close", "click", () => { toggleSidebar(false); $("rooms-toggle").focus(); });
    on("theme-toggle", "click", cycleTheme);
    systemDark.addEventListener("change", applyTheme);
    on("help-button", "click", () => openDialog($("help-dialog"), $("help-dialog").querySelector(".dialog-cancel")));
    on("error-dismiss", "click", clearError);

    on("room-list", "click", (event) => {
      const li = event.target.closest("li[data-room-id]");
      if (li) openRoom(li.dataset.roomId, { focus: true });
    });
    on("room-filter", "input", applyRoomFilter);
    on("room-filter", "keydown", onRoomFilterKeydown);
    on("new-room", "click", openNewRoom);
    on("new-room-form", "submit", submitHandler(createRoom));
    on("join-form", "submit", submitHandler(joinRoom));
    on("invite-button", "click", openInvite);
    on("leave-button", "click", leaveCurrentRoom);
    on("new-dm", "click", openDirectMessage);
    on("dm-form", "submit", submitHandler(startDirectMessage));
    on("invite-form", "submit", submitHandler(sendInvite));
    on("invite-copy", "click", () => copyFrom($("invite-code"), $("invite-copy")));
    on("me-user-copy", "click", () => copyFrom($("me-user-id"), $("me-user-copy")));
    on("me-key-copy", "click", () => copyFrom($("me-signing-key"), $("me-key-copy")));
    on("notify-button", "click", () => {
      if ("Notification" in window) Notification.requestPermission().then(updateNotifyButton, updateNotifyButton);
    });

    on("confirm-form", "submit", submitHandler(() => { settleConfirm(true); $("confirm-dialog").close(); }));
    on("confirm-dialog", "close", () => settleConfirm(false));
    on("react-emoji", "click", (event) => {
      const button = event.target.closest("button[data-key]");
      if (button) pickReaction(button.dataset.key);
    });
    on("react-form", "submit", submitHandler(() => pickReaction($("react-custom").value.trim())));

    const tl = timeline();
    let scrollQueued = false;
    tl.addEventListener("scroll", () => {
      if (scrollQueued) return;
      scrollQueued = true;
      requestAnimationFrame(() => { scrollQueued = false; onTimelineScroll(); });
    }, { passive: true });
    tl.addEventListener("click", onItemsClick);
    tl.addEventListener("keydown", (event) => onItemsKeydown(event, tl));
    tl.addEventListener("focusin", (event) => { const item = event.target.closest(".item"); if (item) activateItem(item); });
    new ResizeObserver(() => { if (view.stuck) tl.scrollTop = tl.scrollHeight; }).observe(tl);
    on("jump-new", "click", () => { showNewest(true); maybeMarkRead(); $("composer").focus(); });

    const box = $("composer");
    box.addEventListener("keydown", onComposerKeydown);
    box.addEventListener("input", () => {
      if (view.room) saveDraft(view.room);
      onComposerTyping();
    });
    on("composer-form", "submit", submitHandler(submitComposer));
    on("attach", "click", () => $("file-input").click());
    on("file-input", "change", () => {
      const input = $("file-input");
      uploadFiles(Array.from(input.files || []));
      input.value = "";
    });
    const dragging = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
    tl.addEventListener("dragover", (event) => {
      if (!dragging(event) || !view.room) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      tl.classList.add("dropping");
    });
    tl.addEventListener("dragleave", () => tl.classList.remove("dropping"));
    tl.addEventListener("drop", (event) => {
      tl.classList.remove("dropping");
      if (!dragging(event) || !view.room) return;
      event.preventDefault();
      uploadFiles(Array.from(event.dataTransfer.files || []));
    });
    on("reply-cancel", "click", () => { endReply(); box.focus(); });
    on("edit-cancel", "click", () => { endEdit(); box.focus(); });

    const threadItems = $("thread-items");
    threadItems.addEventListener("click", onItemsClick);
    threadItems.addEventListener("keydown", (event) => onItemsKeydown(event, threadItems));
    threadItems.addEventListener("focusin", (event) => { const item = event.target.closest(".item"); if (item) activateItem(item); });
    on("thread-close", "click", () => closeThread());
    on("thread-form", "submit", submitHandler(submitThread));
    on("thread-composer", "keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); submitThread(); }
    });

    on("search-form", "submit", submitHandler(() => { clearTimeout(search.timer); runSearch(); }));
    on("search-input", "input", () => {
      clearTimeout(search.timer);
      search.timer = setTimeout(runSearch, 350);
    });
    on("search-input", "keydown", (event) => {
      if (event.key === "Escape" && !$("search-panel").hidden) { event.preventDefault(); event.stopPropagation(); closeSearch(); }
    });
    on("search-this-room", "change", runSearch);
    on("search-input", "focus", () => { if ($("search-input").value.trim() && $("search-results").children.length) $("search-panel").hidden = false; });
    on("search-close", "click", () => closeSearch());
    on("search-results", "click", (event) => {
      const li = event.target.closest("li[data-event-id]");
      if (li) openSearchResult(li);
    });

    on("main", "click", (event) => { if (!event.target.closest("#rooms-toggle")) closeSidebar(); });
    window.addEventListener("focus", maybeMarkRead);
    document.addEventListener("visibilitychange", maybeMarkRead);
  }

  /** The address carries the token once: the cookie holds it from then on, and the address bar must not show it. */
  function dropTokenFromAddress() {
    const url = new URL(location.href);
    if (!url.searchParams.has("token")) return;
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }

  const startup = { done: false, running: null };

  /** Identity, rooms and the last room open; run again when the stream comes up if the node was down at first. */
  function initialLoad() {
    if (startup.done) return Promise.resolve();
    startup.running = startup.running || (async () => {
      try {
        if (!state.me) await loadMe();
        await reloadRooms();
        startup.done = true;
        clearError();
      } catch (error) {
        showError(error, "Loading your rooms");
        return;
      } finally {
        startup.running = null;
      }
      const remembered = storage.get("sessionStorage", "parley.room");
      const first = state.rooms.has(remembered) ? remembered : state.order[0];
      if (first) await openRoom(first, { focus: !isPhone() });
    })();
    return startup.running;
  }

  function start() {
    dropTokenFromAddress();
    applyTheme();
    bindEvents();
    updateNotifyButton();
    renderHeader();
    initialLoad();
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
