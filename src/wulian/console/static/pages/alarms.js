// Alarms: list and filter (state, severity, device, rule); operators and admins acknowledge
// and clear, with an optional comment. Changes from anyone are pushed and the list follows.

import { alarmPath, api } from "../api.js";
import { fmtAgo, fmtNumber, fmtTime, t } from "../i18n.js";
import { openStream } from "../stream.js";
import {
  alarmStateLabel, badge, button, card, debounce, dl, errorBox, fill, h, icon, loading,
  segmented, select, SEVERITIES, severityBadge, severityLabel, table, toast,
} from "../ui.js";

const LIMIT = 200;
const STATES = ["open", "active", "acknowledged", "cleared"];

function stateBadge(state) {
  const tone = { active: "bad-soft", acknowledged: "warn", cleared: "neutral" }[state];
  return badge(alarmStateLabel(state), tone || "neutral");
}

function valueText(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return fmtNumber(value, 3);
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function subjectCell(alarm) {
  if (alarm.subject === "*" || alarm.group) return h("span", { class: "muted" }, t("alarm.group"));
  return h("a", { href: `#/devices/${encodeURIComponent(alarm.subject)}` }, alarm.subject);
}

export async function mount(root, ctx) {
  ctx.setTitle(t("nav.alarms"));
  const mayHandle = ctx.can("alarm.handle");
  const filters = {
    state: STATES.includes(ctx.query.get("state")) ? ctx.query.get("state") : "open",
    severity: ctx.query.get("severity") || "",
    device: ctx.query.get("device") || "",
    rule: ctx.query.get("rule") || "",
  };
  const rules = await api("/rules", { signal: ctx.signal }).then((r) => r.items)
    .catch(() => []);
  const listBox = h("div");
  const summary = h("span", { class: "muted small", "data-testid": "alarms-count" });
  const dialog = h("dialog", { class: "dialog", "data-testid": "alarm-dialog" });
  document.body.append(dialog);
  ctx.onCleanup(() => dialog.remove());

  function syncAddress() {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v && !(k === "state" && v === "open")) {
      query.set(k, v);
    }
    history.replaceState(null, "", `#/alarms${query.toString() ? `?${query}` : ""}`);
  }

  async function act(alarm, action, comment) {
    try {
      await api(alarmPath(alarm.id, action), { method: "POST",
        body: comment ? { comment } : {} });
      toast(action === "acknowledge" ? t("alarm.acknowledged_toast")
        : t("alarm.cleared_toast"), "good");
    } catch (err) {
      toast(err.message || t("error.action_failed"), "bad");
    }
    dialog.open && dialog.close();
    await load();
    ctx.refreshAlarmCount();
  }

  function actions(alarm) {
    if (!mayHandle) return "";
    return h("div", { class: "row-actions" },
      alarm.state === "active" ? button(t("alarm.acknowledge"), { small: true, tone: "primary",
        testid: "ack", iconName: "check", onclick: (e) => {
          e.stopPropagation();
          act(alarm, "acknowledge");
        } }) : null,
      alarm.state !== "cleared" ? button(t("alarm.clear"), { small: true, testid: "clear",
        iconName: "x", onclick: (e) => {
          e.stopPropagation();
          act(alarm, "clear");
        } }) : null);
  }

  async function showDetail(alarm) {
    let full = alarm;
    try {
      full = await api(alarmPath(alarm.id), { signal: ctx.signal });
    } catch {
      // the list row has most of it; history is the only loss
    }
    const comment = h("textarea", { class: "input", rows: 2, maxlength: 1000,
      placeholder: t("alarm.comment_placeholder"), "data-testid": "alarm-comment" });
    const history = full.history || [];
    fill(dialog,
      h("header", { class: "dialog-head" },
        h("div", null, severityBadge(full.severity), " ", h("strong", null,
          full.rule_name || full.rule_id)),
        h("button", { class: "btn btn-ghost", type: "button", title: t("action.close"),
          onclick: () => dialog.close() }, icon("x"))),
      h("div", { class: "dialog-body" },
        h("p", null, full.message || ""),
        dl([
          [t("alarm.state"), stateBadge(full.state)],
          [t("alarm.subject"), subjectCell(full)],
          [t("alarm.raised"), fmtTime(full.raised_ms)],
          [t("alarm.last"), fmtTime(full.last_ms)],
          [t("alarm.count"), fmtNumber(full.count, 0)],
          [t("alarm.value"), valueText(full.value)],
          [t("alarm.first_value"), valueText(full.first_value)],
          full.acknowledged_by ? [t("alarm.acknowledged_by"), `${full.acknowledged_by} · ${
            fmtTime(full.acknowledged_ms)}${full.ack_comment ? ` · ${full.ack_comment}` : ""}`]
            : null,
          full.cleared_by || full.cleared_ms ? [t("alarm.cleared_by"), `${full.cleared_by
            || t("alarm.by_rule")} · ${fmtTime(full.cleared_ms)}${full.clear_comment
            ? ` · ${full.clear_comment}` : ""}`] : null,
        ]),
        history.length ? h("div", null, h("h3", { class: "sub-title" }, t("alarm.history")),
          h("ol", { class: "timeline" }, history.map((c) => h("li", null,
            h("span", { class: "muted small" }, fmtTime(c.ts)), " ",
            h("strong", null, alarmStateLabel(c.kind === "raised" ? "active" : c.kind)),
            c.by ? ` · ${c.by}` : "", c.comment ? ` · ${c.comment}` : "")))) : null,
        mayHandle && full.state !== "cleared" ? h("div", { class: "dialog-form" },
          h("label", { class: "field" }, h("span", { class: "field-label" },
            t("alarm.comment")), comment)) : null),
      mayHandle && full.state !== "cleared" ? h("footer", { class: "dialog-foot" },
        full.state === "active" ? button(t("alarm.acknowledge"), { tone: "primary",
          onclick: () => act(full, "acknowledge", comment.value.trim()) }) : null,
        button(t("alarm.clear"), { onclick: () => act(full, "clear", comment.value.trim()) }))
        : null);
    if (!dialog.open) dialog.showModal();
  }

  async function load() {
    syncAddress();
    let items;
    try {
      const answer = await api("/alarms", { signal: ctx.signal, query: {
        state: filters.state, severity: filters.severity, device: filters.device,
        rule: filters.rule, limit: LIMIT } });
      items = answer.items;
    } catch (err) {
      if (err.name !== "AbortError") fill(listBox, errorBox(err));
      return;
    }
    if (!ctx.alive()) return;
    summary.textContent = items.length >= LIMIT ? t("alarms.count_more", { n: LIMIT })
      : t("alarms.count", { n: fmtNumber(items.length, 0) });
    fill(listBox, table([
      { label: t("alarm.severity"), cell: (a) => severityBadge(a.severity) },
      { label: t("alarm.rule"), cls: "wide", cell: (a) => h("div", { class: "stack" },
        h("strong", null, a.rule_name || a.rule_id),
        a.message ? h("span", { class: "muted small" }, a.message) : null) },
      { label: t("alarm.subject"), cls: "nowrap", cell: subjectCell },
      { label: t("alarm.state"), cell: (a) => stateBadge(a.state) },
      { label: t("alarm.raised"), cls: "nowrap", cell: (a) => h("span",
        { title: fmtTime(a.raised_ms) }, fmtAgo(a.raised_ms)) },
      { label: t("alarm.count"), cls: "num", cell: (a) => fmtNumber(a.count, 0) },
      { label: t("alarm.value"), cls: "num", cell: (a) => valueText(a.value) },
      { label: "", cls: "actions", cell: actions },
    ], items, { emptyText: t("alarms.none"), rowProps: (a) => ({
      class: "clickable", "data-alarm": a.id, "data-state": a.state,
      onclick: () => showDetail(a) }) }));
  }

  const reload = () => load();
  const deviceInput = h("input", { class: "input", type: "search", value: filters.device,
    placeholder: t("alarms.device_filter"), "data-testid": "alarm-device",
    oninput: debounce((e) => { filters.device = e.target.value.trim(); reload(); }, 300) });
  root.append(card({
    testid: "alarms",
    body: [
      h("div", { class: "toolbar" },
        segmented(STATES.map((s) => [s, s === "open" ? t("alarms.open")
          : alarmStateLabel(s)]), filters.state, (v) => { filters.state = v; reload(); },
        "alarm-state"),
        select([["", t("alarms.any_severity")], ...SEVERITIES.map((s) => [s,
          severityLabel(s)])], filters.severity, (v) => { filters.severity = v; reload(); },
        { "data-testid": "alarm-severity" }),
        rules.length ? select([["", t("alarms.any_rule")], ...rules.map((r) => [r.id,
          r.name || r.id])], filters.rule, (v) => { filters.rule = v; reload(); },
        { "data-testid": "alarm-rule" }) : null,
        deviceInput,
        h("span", { class: "grow" }),
        summary,
        mayHandle ? null : badge(t("alarms.read_only"), "neutral", { "data-testid":
          "read-only" })),
      listBox],
  }));
  fill(listBox, loading());
  await load();
  const close = openStream({ alarms: true }, { alarm: debounce(() => {
    load();
    ctx.refreshAlarmCount();
  }, 300) });
  return close;
}
