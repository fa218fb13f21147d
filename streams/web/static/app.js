// 平安总线 · 综治中心工作台 — 页面逻辑。所有数据用 textContent 渲染，防止注入；地图用本地 vendor/leaflet（无外部资源）。
"use strict";
(function () {
  const TOKEN_KEY = "pingan.token";
  const KIND = { dispute: "矛盾纠纷", domestic_violence: "家庭暴力", criminal: "刑事案件", theft: "盗窃",
    public_order: "治安", traffic: "交通", fire: "火灾", rescue: "救助", medical: "医疗", help: "求助",
    mass_gathering: "群体性事件", disaster: "灾害", intrusion: "周界入侵", vehicle_sighting: "车辆识别",
    person_sighting: "人员识别", device: "设备", other: "其他" };
  let TIER = { village: "村级", town: "镇级", county: "县级" };
  let STATUS = { open: "待受理", accepted: "已受理", assigned: "已分派", resolved: "已办结", merged: "已合并",
    escalated: "已上报", closed: "已办结" };
  let ACTION = { accept: "受理", assign: "分派", note: "备注", resolve: "办结", reopen: "重新打开", escalate: "上报" };
  let ALLOWED = {};
  const SOURCE = { camera: "视频告警", grid: "网格上报", alarm110: "110警情", mediation: "人民调解", door: "门禁" };
  const ROLE = { reporter: "报告人", party: "当事人", victim: "受害人", suspect: "嫌疑人", caller: "报警人",
    witness: "证人", applicant: "申请人", respondent: "被申请人", resident: "住户", subject: "识别对象",
    mentioned: "提及人员" };
  const SEV = { 1: "一般", 2: "较重", 3: "严重", 4: "特别严重" };
  // 摄像机等设备上报的英文事件描述（ISAPI eventDescription / eventType）→ 中文。
  const DEVICE_TEXT = { "motion alarm": "移动侦测报警", vmd: "移动侦测报警", "line crossing": "越界侦测报警",
    linedetection: "越界侦测报警", intrusion: "区域入侵报警", fielddetection: "区域入侵报警", facecapture: "人脸抓拍",
    "face capture": "人脸抓拍", anpr: "车牌识别", "video loss": "视频丢失", videoloss: "视频丢失", tamper: "视频遮挡",
    shelteralarm: "视频遮挡", "shelter alarm": "视频遮挡", "videoloss alarm": "视频丢失", accesscontrollerevent: "门禁刷卡", "access controller event": "门禁刷卡" };
  const text = (t) => { const k = String(t || "").trim().toLowerCase(); return DEVICE_TEXT[k] || t; };
  const SEV_COLOR = { 1: "#5b8def", 2: "#e0a800", 3: "#e8590c", 4: "#b3261e" };
  const $ = (id) => document.getElementById(id);
  let page = 1;
  const size = 20;
  let me = null;
  let current = null;        // the incident shown in the detail panel
  let map = null, areaLayer = null, markerLayer = null, evidenceLayer = null;
  let streamAbort = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined || c === "") continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // 日期时间：yyyy-MM-dd HH:mm（Asia/Shanghai），与浏览器语言无关。
  const PARTS = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  function parts(ms) { const o = {}; for (const p of PARTS.formatToParts(new Date(ms))) o[p.type] = p.value; return o; }
  const fmtDate = (ms) => { if (!ms) return "—"; const p = parts(ms); return p.year + "-" + p.month + "-" + p.day; };
  const fmt = (ms) => { if (!ms) return "—"; const p = parts(ms); return fmtDate(ms) + " " + p.hour + ":" + p.minute; };
  // 调解案件等只有日期的记录：当地 00:00:00 的时间只显示日期。
  const fmtEvent = (ev) => { if (!ev.occurred_at) return "—"; const p = parts(ev.occurred_at);
    return (p.hour === "00" && p.minute === "00" && p.second === "00") ? fmtDate(ev.occurred_at) : fmt(ev.occurred_at); };
  const person = (p) => { const m = /^([a-z_]+):(.*)$/.exec(p || ""); return m ? (ROLE[m[1]] || "相关人员") + "：" + m[2] : p; };
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }

  async function api(path, options) {
    const headers = Object.assign({ Authorization: "Bearer " + token() }, (options && options.headers) || {});
    const resp = await fetch(path, Object.assign({}, options, { headers }));
    if (resp.status === 401) { sessionStorage.removeItem(TOKEN_KEY); showLogin("令牌无效或已失效，请重新输入。"); throw new Error("unauthorized"); }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw Object.assign(new Error(body.error || ("请求失败 " + resp.status)), { status: resp.status });
    return body;
  }

  function showLogin(msg) {
    $("login").hidden = false; $("app").hidden = true; $("who").textContent = "未登录";
    $("login-msg").textContent = msg || "";
    if (streamAbort) { streamAbort.abort(); streamAbort = null; }
  }

  function params() {
    const form = new FormData($("search-form"));
    const p = new URLSearchParams();
    for (const [k, v] of form.entries()) if (v) p.set(k, String(v));
    p.set("page", String(page)); p.set("size", String(size));
    return p;
  }

  function clearDetail(msg) {
    current = null;
    $("detail").replaceChildren(el("span", { class: "muted" }, msg || "点击工作队列或检索结果查看详情。"));
    if (evidenceLayer) evidenceLayer.clearLayers();
  }

  async function search() {
    showError("");
    for (const name of ["from", "to"]) {
      const v = $("search-form").elements[name].value.trim();
      if (v && !/^\d{4}-\d{2}-\d{2}$/.test(v)) { showError("日期格式应为 yyyy-MM-dd，例如 2026-07-17"); return; }
    }
    try {
      const data = await api("/api/incidents?" + params().toString());
      $("results-title").textContent = "检索结果";
      renderResults(data, $("results"));
    } catch (e) { if (e.message !== "unauthorized") showError("检索失败：" + e.message); }
    loadStats();
  }

  function badges(it) {
    return el("div", null,
      el("span", { class: "badge sev" + it.severity }, SEV[it.severity] || it.severity),
      el("span", { class: "badge" }, KIND[it.kind] || it.kind),
      el("span", { class: "badge" }, TIER[it.handling_tier || it.tier] || it.tier),
      el("span", { class: "badge " + it.status }, STATUS[it.status] || it.status),
      it.actionable === false ? el("span", { class: "badge evidence" }, "线索") : null,
      it.escalated ? el("span", { class: "badge escalated" }, "已升级") : null);
  }

  function item(it, list) {
    const li = el("li", { tabindex: "0", "data-id": it.incident_id }, badges(it),
      el("div", null, text(it.snippet) || "（无文本）"),
      el("div", { class: "muted" }, (it.admin_name || it.admin_code) + " · " + fmt(it.last_seen) + " · " + it.event_count + " 条事件"));
    li.addEventListener("click", () => {
      for (const x of document.querySelectorAll(".results li.active")) x.classList.remove("active");
      li.classList.add("active"); showDetail(it.incident_id);
    });
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") li.click(); });
    return li;
  }

  function renderResults(data, list) {
    list.replaceChildren();
    $("total").textContent = "共 " + data.total + " 条";
    for (const it of data.items) list.append(item(it, list));
    if (!data.items.length) { list.append(el("li", { class: "muted" }, "没有符合条件的事件。")); clearDetail("没有符合条件的事件。"); }
    $("page-no").textContent = "第 " + page + " 页";
    $("prev").disabled = page <= 1;
    $("next").disabled = page * size >= data.total;
    drawMarkers(data.items, "result");
  }

  // ---------------------------------------------------------------- 工作队列
  let queueTotal = 0;
  async function loadQueue() {
    const tier = $("queue-tier").value;
    let data;
    try { data = await api("/api/queue" + (tier ? "?tier=" + tier : "")); }
    catch (e) { if (e.message !== "unauthorized") $("queue").replaceChildren(el("li", { class: "muted" }, "队列不可用：" + e.message)); return; }
    const list = $("queue");
    queueTotal = data.total;
    $("queue-total").textContent = "待办 " + data.total + " 件";
    const items = [];
    for (const it of data.items) {
      const li = item(it, list);
      li.classList.add("queue-item");
      if (it.due) li.classList.add(it.due === "overdue" ? "overdue" : "due-soon");
      const due = it.deadline_at ? "办理时限 " + fmt(it.deadline_at) + (it.due === "overdue" ? "（已超时）" : it.due === "due_soon" ? "（即将到期）" : "") : "无办理时限";
      li.append(el("div", { class: "deadline" }, due + (it.assignee ? " · 承办人 " + it.assignee : "")));
      if (current && current.incident_id === it.incident_id) li.classList.add("active");
      items.push(li);
    }
    if (!data.items.length) items.push(el("li", { class: "muted" }, "本辖区暂无待办事件。"));
    // a live update reloads the queue: the focused entry stays focused (one replaceChildren keeps
    // the list's scroll position by itself)
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.id : null;
    list.replaceChildren(...items);
    const again = focused && list.querySelector("li[data-id='" + CSS.escape(focused) + "']");
    if (again) again.focus({ preventScroll: true });
    drawMarkers(data.items, "queue");
  }

  // ---------------------------------------------------------------- 详情与处置
  function qualityNote(notes) {
    if (!notes || !notes.length) return null;
    const list = el("ul", null);
    for (const q of notes) list.append(el("li", null, el("code", null, q.field), "：", q.reason || "无法识别"));
    return el("div", { class: "quality-note", role: "note" },
      el("strong", null, "数据质量"), el("span", { class: "muted" }, "（以下字段未能按预期读取，事件仍已收录）"), list);
  }

  function lifecycleBlock(d) {
    const rows = el("dl", { class: "lifecycle" },
      el("dt", null, "办理状态"), el("dd", { id: "status-name" }, d.status_name || STATUS[d.status] || d.status),
      el("dt", null, "处置层级"), el("dd", null, TIER[d.handling_tier] || d.handling_tier || "—"),
      el("dt", null, "承办人"), el("dd", { id: "assignee" }, d.assignee || "—"));
    if (d.outcome) rows.append(el("dt", null, "办理结果"), el("dd", null, d.outcome));
    const out = [rows, el("p", { id: "deadline", class: "deadline-line" },
      d.deadline_at ? "办理时限 " + fmt(d.deadline_at) : (d.status === "resolved" ? "已办结，无办理时限" : "无办理时限（最高层级或仅作线索）"))];
    if ((d.escalation_history || []).length) {
      const ul = el("ul", { class: "escalations" });
      for (const s of d.escalation_history) ul.append(el("li", null, fmt(s.at) + " · " + (TIER[s.from_tier] || s.from_tier || "") + " → " + (TIER[s.to_tier] || s.to_tier) + "：", el("strong", null, s.reason)));
      out.push(el("h3", null, "升级记录"), ul);
    }
    const ds = el("ol", { class: "dispositions" });
    for (const x of d.dispositions || []) {
      const extra = [x.assignee && "承办人 " + x.assignee, x.outcome && "结果：" + x.outcome, x.note && "备注：" + x.note,
        x.to_tier && "上报至" + (TIER[x.to_tier] || x.to_tier)].filter(Boolean).join("；");
      ds.append(el("li", null, fmt(x.at) + " · " + (x.origin === "source" ? "来源系统" : x.actor) + " · ", el("strong", null, x.action_name || ACTION[x.action] || x.action), extra ? "：" + extra : ""));
    }
    out.push(el("h3", null, "处置记录"), (d.dispositions || []).length ? ds : el("p", { class: "muted" }, "暂无处置记录。"));
    return out;
  }

  function actionBar(d) {
    const status = d.status === "closed" ? "resolved" : d.status === "escalated" ? "open" : d.status;
    const can = (a) => d.actionable !== false && (ALLOWED[a] || []).includes(status);
    const msg = el("p", { id: "action-msg", class: "muted", role: "status" });
    const input = (id, ph) => el("input", { id, type: "text", maxlength: "500", placeholder: ph });
    const btn = (action, label) => { const b = el("button", { type: "button", "data-action": action }, label); b.disabled = !can(action); return b; };
    const bar = el("div", { class: "actions", id: "actions" });
    const accept = btn("accept", "受理");
    const assignee = input("assignee-input", "承办人（网格员或部门）"); const assign = btn("assign", "分派");
    const note = input("note-input", "备注内容"); const noteBtn = btn("note", "备注");
    const outcome = input("outcome-input", "办理结果"); const resolve = btn("resolve", "办结");
    const reopen = btn("reopen", "重新打开");
    const toTier = el("select", { id: "to-tier" }, el("option", { value: "town" }, "镇级"), el("option", { value: "county" }, "县级"));
    const escalate = btn("escalate", "上报");
    bar.append(el("div", null, accept, " ", reopen), el("div", null, assignee, assign), el("div", null, note, noteBtn),
      el("div", null, outcome, resolve), el("div", null, toTier, escalate), msg);
    // the panel may be re-rendered while a request is out (a live update): answer in the current one
    const say = (cls, text) => { const m = $("action-msg") || msg; m.className = cls; m.textContent = text; };
    const send = async (action, body) => {
      say("muted", "提交中…");
      try {
        const r = await api("/api/incidents/" + encodeURIComponent(d.incident_id) + "/actions", { method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(Object.assign({ action, request_id: (crypto.randomUUID ? crypto.randomUUID() : String(Date.now())) }, body)) });
        say("ok", "已提交" + (ACTION[action] || action) + "（编号 " + r.disposition_id.slice(0, 8) + "），处理后自动更新。");
        const field = $(ACTION_FIELD[action]);
        if (field) field.value = "";  // submitted: the field is free for the next entry
        setTimeout(() => refresh(d.incident_id), 1500);
      } catch (e) { if (e.message !== "unauthorized") say("error", (ACTION[action] || action) + "未成功：" + e.message); }
    };
    accept.addEventListener("click", () => send("accept", {}));
    reopen.addEventListener("click", () => send("reopen", {}));
    assign.addEventListener("click", () => { if (!assignee.value.trim()) { say("error", "请填写承办人"); return; } send("assign", { assignee: assignee.value.trim() }); });
    noteBtn.addEventListener("click", () => { if (!note.value.trim()) { say("error", "请填写备注"); return; } send("note", { note: note.value.trim() }); });
    resolve.addEventListener("click", () => { if (!outcome.value.trim()) { say("error", "请填写办理结果"); return; } send("resolve", { outcome: outcome.value.trim() }); });
    escalate.addEventListener("click", () => send("escalate", { to_tier: toTier.value }));
    return bar;
  }

  // What an operator is typing or reading in the detail panel survives a refresh of the same
  // incident (live updates and the refresh after an action re-render the whole panel): the action
  // form's fields, the focused field and its caret, and the action message.
  const FORM_FIELDS = ["assignee-input", "note-input", "outcome-input", "to-tier"];
  const ACTION_FIELD = { assign: "assignee-input", note: "note-input", resolve: "outcome-input" };
  function formState(id) {
    if (!current || current.incident_id !== id) return null;
    const values = {};
    for (const f of FORM_FIELDS) { const n = $(f); if (n) values[f] = n.value; }
    const a = document.activeElement;
    const focus = a && FORM_FIELDS.includes(a.id) ? { id: a.id, start: a.selectionStart, end: a.selectionEnd } : null;
    const m = $("action-msg");
    return { values, focus, msg: m && m.textContent ? { cls: m.className, text: m.textContent } : null };
  }
  function restoreForm(state) {
    if (!state) return;
    for (const [f, v] of Object.entries(state.values)) { const n = $(f); if (n && v) n.value = v; }
    const m = $("action-msg");
    if (m && state.msg) { m.className = state.msg.cls; m.textContent = state.msg.text; }
    const n = state.focus && $(state.focus.id);
    if (n) {
      n.focus({ preventScroll: true });
      if (state.focus.start != null && n.setSelectionRange) n.setSelectionRange(state.focus.start, state.focus.end);
    }
  }

  // `keepFrom`: the incident whose typed fields the panel keeps (the id itself on a refresh, the
  // merged-away id when the panel follows a merge to the surviving incident)
  let mergeNote = null;  // {from, into}: shown on the surviving incident the panel followed a merge to
  let detailSeq = 0;     // the latest showDetail call owns the panel (an older answer arriving late is dropped)
  async function showDetail(id, quiet, keepFrom) {
    const box = $("detail");
    const seq = ++detailSeq;
    if (!quiet) mergeNote = null;
    if (!quiet) box.replaceChildren(el("span", { class: "muted" }, "加载中…"));
    let d;
    try { d = await api("/api/incidents/" + encodeURIComponent(id)); }
    catch (e) {
      if (seq !== detailSeq) return;
      current = null; box.replaceChildren(el("span", { class: "error" }, e.status === 404 ? "未找到（或不在本辖区）。" : "加载失败：" + e.message)); return;
    }
    if (seq !== detailSeq) return;  // the operator opened another incident (or a newer refresh) meanwhile
    const kept = quiet ? formState(keepFrom || id) : null;  // read after the fetch: what was typed meanwhile counts
    current = d;
    settleQueueItem(d);
    const names = {};
    const timeline = el("ol", { class: "timeline" });
    d.events.forEach((ev, i) => {
      names[ev.event_id] = "#" + (i + 1);
      timeline.append(el("li", null,
        el("div", null, el("strong", null, "#" + (i + 1) + " "), fmtEvent(ev), " · ", SOURCE[ev.source] || ev.source, " · ", KIND[ev.kind] || ev.kind),
        el("div", null, text(ev.text) || ""),
        el("div", { class: "muted" }, [ev.admin_name || ev.admin_code || "", (ev.persons || []).map(person).join("、")].filter(Boolean).join(" · ")),
        qualityNote(ev.quality)));
    });
    const links = el("ul", { class: "links" });
    for (const l of d.links) {
      links.append(el("li", null, (names[l.event_a] || l.event_a) + " ↔ " + (names[l.event_b] || l.event_b) +
        "（相似度 " + Number(l.score).toFixed(2) + "）：", (l.reasons || []).join("；") || "—"));
    }
    box.replaceChildren(...[
      el("div", null,
        el("span", { class: "badge sev" + d.severity }, SEV[d.severity] || d.severity),
        el("span", { class: "badge" }, KIND[d.kind] || d.kind),
        el("span", { class: "badge" }, "层级：" + (TIER[d.handling_tier || d.tier] || d.tier)),
        el("span", { class: "badge " + d.status }, "状态：" + (STATUS[d.status] || d.status)),
        d.actionable === false ? el("span", { class: "badge evidence" }, "线索（无需处置）") : null),
      el("p", { class: "muted" }, "编号 " + d.incident_id + " · 责任区域 " + (d.admin_name || d.admin_code) +
        " · " + fmt(d.first_seen) + " 至 " + fmt(d.last_seen)),
      mergeNote && mergeNote.into === d.incident_id
        ? el("p", { class: "merge-note", id: "merge-note", role: "status" }, "原事件 " + mergeNote.from + " 已与本事件关联合并，以下为合并后的事件。")
        : null,
      ...lifecycleBlock(d),
      d.actionable === false ? null : actionBar(d),
      el("h3", null, "时间线（" + d.event_count + " 条关联事件）"), timeline,
      el("h3", null, "关联理由"), d.links.length ? links : el("p", { class: "muted" }, "单一事件，无关联。")
    ].filter((x) => x !== null));  // replaceChildren would print a null as "null"
    restoreForm(kept);
    drawEvidence(d);
  }

  // The detail is read in real time, the queue through search (visible after the index's next
  // refresh): an incident the detail shows as resolved leaves the queue now, not at the next update.
  function settleQueueItem(d) {
    if (d.status !== "resolved" && d.actionable !== false) return;
    const li = document.querySelector("#queue li.queue-item[data-id='" + CSS.escape(d.incident_id) + "']");
    if (!li) return;
    li.remove();
    queueTotal = Math.max(0, queueTotal - 1);
    $("queue-total").textContent = "待办 " + queueTotal + " 件";
    setTimeout(loadQueue, 1500);  // and the search agrees once the index has refreshed
  }

  function refresh(id) {
    loadQueue();
    if (current && (!id || current.incident_id === id)) showDetail(current.incident_id, true);
  }

  // ---------------------------------------------------------------- 地图
  function initMap() {
    if (map || typeof L === "undefined") return;
    map = L.map("map", { zoomControl: true, attributionControl: true }).setView([31.2, 103.45], 9);
    if (me.map && me.map.tile_url) {
      L.tileLayer(me.map.tile_url, { maxZoom: 18, attribution: me.map.attribution || "" }).addTo(map);
      $("map-mode").textContent = "（本县瓦片服务）";
    } else {
      $("map-mode").textContent = "（离线：行政区划示意）";
      $("map").classList.add("offline");
    }
    areaLayer = L.layerGroup().addTo(map);
    markerLayer = L.layerGroup().addTo(map);
    evidenceLayer = L.layerGroup().addTo(map);
    api("/api/areas").then((data) => {
      const pts = [];
      for (const a of data.items) {
        const town = a.level === "town";
        L.circle([a.lat, a.lon], { radius: town ? 2500 : 900, color: town ? "#6b7785" : "#9aa5b1", weight: 1,
          fillOpacity: town ? 0.06 : 0.1, className: "area " + a.level }).addTo(areaLayer)
          .bindTooltip(a.name, { permanent: town || data.items.length <= 12, direction: town ? "center" : "top",
            className: "area-label " + a.level });  // village names on hover when the county is shown
        pts.push([a.lat, a.lon]);
      }
      if (pts.length) map.fitBounds(L.latLngBounds(pts).pad(0.15));
    }).catch(() => {});
  }

  const markers = {};
  function drawMarkers(items, origin) {
    if (!map) return;
    for (const it of items) {
      if (it.lat == null || it.lon == null) continue;
      const old = markers[it.incident_id];
      if (old) markerLayer.removeLayer(old);
      const evidence = it.actionable === false;
      const m = L.circleMarker([it.lat, it.lon], { radius: evidence ? 5 : 8, color: evidence ? "#6b7785" : SEV_COLOR[it.severity] || "#b3261e",
        weight: it.due ? 3 : 1, fillOpacity: evidence ? 0.4 : 0.8, className: "incident-marker" + (evidence ? " evidence" : "") + (it.due ? " due" : "") });
      const pop = el("div", null, el("strong", null, (KIND[it.kind] || it.kind) + " · " + (STATUS[it.status] || it.status)), el("br"),
        text(it.snippet) || "", el("br"), evidence ? "线索" : (it.deadline_at ? "办理时限 " + fmt(it.deadline_at) : ""));
      m.bindPopup(pop);
      m.on("click", () => showDetail(it.incident_id));
      m.addTo(markerLayer);
      markers[it.incident_id] = m;
    }
  }

  function drawEvidence(d) {
    if (!map) return;
    evidenceLayer.clearLayers();
    const pts = [];
    d.events.forEach((ev, i) => {
      if (ev.lat == null || ev.lon == null) return;
      L.circleMarker([ev.lat, ev.lon], { radius: 5, color: "#1d2733", weight: 2, fillColor: "#fff", fillOpacity: 1, className: "evidence-marker" })
        .bindTooltip("#" + (i + 1) + " " + (SOURCE[ev.source] || ev.source) + " · " + (KIND[ev.kind] || ev.kind)).addTo(evidenceLayer);
      pts.push([ev.lat, ev.lon]);
    });
    if (pts.length) map.panTo(L.latLngBounds(pts).getCenter());
  }

  // ---------------------------------------------------------------- 实时更新（SSE，经 fetch 携带令牌）
  // An incident merged into another is retired (its document deleted): its marker goes, and a panel
  // showing it moves to the surviving incident, keeping what was typed, with a note saying so.
  function followMerge(it) {
    const old = markers[it.incident_id];
    if (old) { markerLayer.removeLayer(old); delete markers[it.incident_id]; }
    if (current && current.incident_id === it.incident_id && it.merged_into) {
      mergeNote = { from: it.incident_id, into: it.merged_into };
      showDetail(it.merged_into, true, it.incident_id);
    }
    schedule(it.merged_into || it.incident_id);
  }

  let pending = null;
  function schedule(id) {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => { pending = null; refresh(id); }, 400);
  }

  async function connectStream() {
    if (streamAbort) streamAbort.abort();
    const ctrl = new AbortController(); streamAbort = ctrl;
    const status = $("live-status");
    try {
      const resp = await fetch("/api/stream", { headers: { Authorization: "Bearer " + token() }, signal: ctrl.signal });
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      const reader = resp.body.getReader(); const dec = new TextDecoder(); let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          let name = "message", data = "";
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7); else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (name === "ready") { status.textContent = "实时更新已连接"; status.className = "live on"; }
          else if (name === "incident" && data) {
            const it = JSON.parse(data);
            if (it.status === "merged") followMerge(it); else { drawMarkers([it], "live"); schedule(it.incident_id); }
          }
          else if (name === "disposition" && data) { schedule(JSON.parse(data).incident_id); }
        }
      }
    } catch (e) { if (ctrl.signal.aborted) return; }
    status.textContent = "实时更新已断开，重连中…"; status.className = "live off";
    if (streamAbort === ctrl) setTimeout(() => { if (streamAbort === ctrl && token()) connectStream(); }, 3000);
  }

  // ---------------------------------------------------------------- 号码查询
  async function lookup(ev) {
    ev.preventDefault();
    const f = $("lookup-form").elements; const value = f.value.value.trim();
    if (!value) return;
    showError("");
    try {
      const data = await api("/api/lookup", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ [f.field.value]: value }) });
      f.value.value = "";
      $("results-title").textContent = "号码查询结果";
      page = 1; renderResults(data, $("results"));
    } catch (e) { if (e.message !== "unauthorized") showError("查询失败：" + e.message); }
  }

  // ---------------------------------------------------------------- 分区统计（乡镇 → 村）
  async function loadStats() {
    const box = $("stats");
    const p = params(); p.delete("page"); p.delete("size");
    let s;
    try { s = await api("/api/stats?" + p.toString()); } catch (e) { box.textContent = "统计不可用"; return; }
    const table = el("table", null, el("tr", null, el("th", null, "区域"), el("th", null, "事件数"), el("th", null, "主要类型")));
    const top = (r) => Object.entries(r.by_kind || {}).sort((a, b) => b[1] - a[1]).slice(0, 2).map(([k, n]) => (KIND[k] || k) + " " + n).join("，");
    const row = (r, level) => el("tr", { class: "area-" + level }, el("td", null, r.name || r.code), el("td", null, r.count), el("td", null, top(r)));
    const ordered = [];
    for (const c of s.by_county) { table.append(row(c, "county")); ordered.push(c); }
    const placed = new Set();
    for (const t of s.by_town) {
      table.append(row(t, "town")); ordered.push(t);
      for (const v of s.by_village) if (v.code.startsWith(t.code)) { table.append(row(v, "village")); ordered.push(v); placed.add(v.code); }
    }
    for (const v of s.by_village) if (!placed.has(v.code)) { table.append(row(v, "village")); ordered.push(v); }
    const kinds = el("p", { class: "muted" }, "按类型：" + Object.entries(s.by_kind).map(([k, n]) => (KIND[k] || k) + " " + n).join("，"));
    box.replaceChildren(el("p", null, "合计 " + s.total + " 起"), table, kinds);
    fillAreas(ordered);
  }

  function fillAreas(rows) {
    const sel = $("area-select");
    if (sel.options.length > 1) return;
    for (const r of rows) sel.append(el("option", { value: r.code }, r.name || r.code));
  }

  async function start() {
    try {
      me = await api("/api/whoami");
      if (me.labels) { STATUS = Object.assign(STATUS, me.labels.status); ACTION = me.labels.action; TIER = me.labels.tier; }
      ALLOWED = me.allowed || {};
      $("who").textContent = me.user + " · " + (me.admin_name || me.admin_code);
      $("login").hidden = true; $("app").hidden = false; $("login-msg").textContent = "";
      initMap();
      page = 1;
      await Promise.all([loadQueue(), search()]);
      connectStream();
    } catch (e) { if (e.message !== "unauthorized") showLogin("无法连接服务：" + e.message); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      start();
    });
    $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); page = 1; search(); });
    $("lookup-form").addEventListener("submit", lookup);
    $("queue-tier").addEventListener("change", loadQueue);
    $("prev").addEventListener("click", () => { if (page > 1) { page--; search(); } });
    $("next").addEventListener("click", () => { page++; search(); });
    if (token()) start();
  });
})();
