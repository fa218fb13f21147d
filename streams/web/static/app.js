// 平安总线 · 综治中心事件检索 — 页面逻辑（无外部依赖）。所有数据用 textContent 渲染，防止注入。
"use strict";
(function () {
  const TOKEN_KEY = "pingan.token";
  const KIND = { dispute: "矛盾纠纷", domestic_violence: "家庭暴力", criminal: "刑事案件", theft: "盗窃",
    public_order: "治安", traffic: "交通", fire: "火灾", rescue: "救助", medical: "医疗", help: "求助",
    mass_gathering: "群体性事件", disaster: "灾害", intrusion: "周界入侵", vehicle_sighting: "车辆识别",
    person_sighting: "人员识别", device: "设备", other: "其他" };
  const TIER = { village: "村级", town: "镇级", county: "县级" };
  const STATUS = { open: "处置中", escalated: "已上报", closed: "已办结", merged: "已合并" };
  const SOURCE = { camera: "视频告警", grid: "网格上报", alarm110: "110警情", mediation: "人民调解", door: "门禁" };
  const SEV = { 1: "一般", 2: "较重", 3: "严重", 4: "特别严重" };
  const $ = (id) => document.getElementById(id);
  let page = 1;
  const size = 20;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const fmt = (ms) => ms ? new Date(ms).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : "—";
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
  }

  function params() {
    const form = new FormData($("search-form"));
    const p = new URLSearchParams();
    for (const [k, v] of form.entries()) if (v) p.set(k, String(v));
    p.set("page", String(page)); p.set("size", String(size));
    return p;
  }

  async function search() {
    showError("");
    try {
      const data = await api("/api/incidents?" + params().toString());
      renderResults(data);
    } catch (e) { if (e.message !== "unauthorized") showError("检索失败：" + e.message); }
    loadStats();
  }

  function renderResults(data) {
    const list = $("results"); list.replaceChildren();
    $("total").textContent = "共 " + data.total + " 条";
    for (const it of data.items) {
      const li = el("li", { tabindex: "0" },
        el("div", null,
          el("span", { class: "badge sev" + it.severity }, SEV[it.severity] || it.severity),
          el("span", { class: "badge" }, KIND[it.kind] || it.kind),
          el("span", { class: "badge" }, TIER[it.tier] || it.tier),
          el("span", { class: "badge " + it.status }, STATUS[it.status] || it.status)),
        el("div", null, it.snippet || "（无文本）"),
        el("div", { class: "muted" }, (it.admin_name || it.admin_code) + " · " + fmt(it.last_seen) + " · " + it.event_count + " 条事件"));
      li.addEventListener("click", () => { for (const x of list.children) x.classList.remove("active"); li.classList.add("active"); showDetail(it.incident_id); });
      li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") li.click(); });
      list.append(li);
    }
    if (!data.items.length) list.append(el("li", { class: "muted" }, "没有符合条件的事件。"));
    $("page-no").textContent = "第 " + page + " 页";
    $("prev").disabled = page <= 1;
    $("next").disabled = page * size >= data.total;
  }

  // 数据质量：来源记录中有问题但已保留的可选字段（只显示字段和原因，从不显示原值）。
  function qualityNote(notes) {
    if (!notes || !notes.length) return null;
    const list = el("ul", null);
    for (const q of notes) list.append(el("li", null, el("code", null, q.field), "：", q.reason || "无法识别"));
    return el("div", { class: "quality-note", role: "note" },
      el("strong", null, "数据质量"), el("span", { class: "muted" }, "（以下字段未能按预期读取，事件仍已收录）"), list);
  }

  async function showDetail(id) {
    const box = $("detail"); box.replaceChildren(el("span", { class: "muted" }, "加载中…"));
    let d;
    try { d = await api("/api/incidents/" + encodeURIComponent(id)); }
    catch (e) { box.replaceChildren(el("span", { class: "error" }, e.status === 404 ? "未找到（或不在本辖区）。" : "加载失败：" + e.message)); return; }
    const names = {};
    const timeline = el("ol", { class: "timeline" });
    d.events.forEach((ev, i) => {
      names[ev.event_id] = "#" + (i + 1);
      timeline.append(el("li", null,
        el("div", null, el("strong", null, "#" + (i + 1) + " "), fmt(ev.occurred_at), " · ", SOURCE[ev.source] || ev.source, " · ", KIND[ev.kind] || ev.kind),
        el("div", null, ev.text || ""),
        el("div", { class: "muted" }, [ev.admin_name || ev.admin_code || "", (ev.persons || []).join("、")].filter(Boolean).join(" · ")),
        qualityNote(ev.quality)));
    });
    const links = el("ul", { class: "links" });
    for (const l of d.links) {
      links.append(el("li", null, (names[l.event_a] || l.event_a) + " ↔ " + (names[l.event_b] || l.event_b) +
        "（相似度 " + Number(l.score).toFixed(2) + "）：", (l.reasons || []).join("；") || "—"));
    }
    box.replaceChildren(
      el("div", null,
        el("span", { class: "badge sev" + d.severity }, SEV[d.severity] || d.severity),
        el("span", { class: "badge" }, KIND[d.kind] || d.kind),
        el("span", { class: "badge" }, "层级：" + (TIER[d.tier] || d.tier)),
        el("span", { class: "badge " + d.status }, "状态：" + (STATUS[d.status] || d.status))),
      el("p", { class: "muted" }, "编号 " + d.incident_id + " · 责任区域 " + (d.admin_name || d.admin_code) +
        " · " + fmt(d.first_seen) + " 至 " + fmt(d.last_seen)),
      el("h3", null, "时间线（" + d.event_count + " 条关联事件）"), timeline,
      d.hidden_events ? el("p", { class: "muted" }, "另有 " + d.hidden_events + " 条事件不在本辖区，未显示。") : "",
      el("h3", null, "关联理由"), d.links.length ? links : el("p", { class: "muted" }, "单一事件，无关联。"));
  }

  async function loadStats() {
    const box = $("stats");
    const p = params(); p.delete("page"); p.delete("size");
    let s;
    try { s = await api("/api/stats?" + p.toString()); } catch (e) { box.textContent = "统计不可用"; return; }
    const table = el("table", null, el("tr", null, el("th", null, "区域"), el("th", null, "事件数"), el("th", null, "主要类型")));
    const rows = [].concat(s.by_county, s.by_town, s.by_village);
    for (const r of rows) {
      const top = Object.entries(r.by_kind || {}).sort((a, b) => b[1] - a[1]).slice(0, 2).map(([k, n]) => (KIND[k] || k) + " " + n).join("，");
      table.append(el("tr", null, el("td", null, r.name || r.code), el("td", null, r.count), el("td", null, top)));
    }
    const kinds = el("p", { class: "muted" }, "按类型：" + Object.entries(s.by_kind).map(([k, n]) => (KIND[k] || k) + " " + n).join("，"));
    box.replaceChildren(el("p", null, "合计 " + s.total + " 起"), table, kinds);
    fillAreas(rows);
  }

  function fillAreas(rows) {
    const sel = $("area-select");
    if (sel.options.length > 1) return;
    for (const r of rows) sel.append(el("option", { value: r.code }, r.name || r.code));
  }

  async function start() {
    try {
      const me = await api("/api/whoami");
      $("who").textContent = me.user + " · " + (me.admin_name || me.admin_code);
      $("login").hidden = true; $("app").hidden = false; $("login-msg").textContent = "";
      page = 1; await search();
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
    $("prev").addEventListener("click", () => { if (page > 1) { page--; search(); } });
    $("next").addEventListener("click", () => { page++; search(); });
    if (token()) start();
  });
})();
