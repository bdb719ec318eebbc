// The throughput chart of bench/results.md: queries per second by number of callers (1, 10,
// 100), edgepool next to each peer, one panel per transport (rows) and runtime (columns), from
// the JSON the bench files write with `--json`. A hand-written SVG with its own white
// background, so that it reads the same in GitHub's light and dark themes.
//
// bench/run.ts writes bench/throughput.svg with it; to redraw from earlier JSON:
//   deno run -A bench/chart.ts .tmp/bench/*.json > bench/throughput.svg
//   deno fmt bench/throughput.svg   (deno fmt lays out SVG too)

import type { BenchRecord, BenchReport } from "./pool_query_bench.ts";

/** Options of {@link throughputChart}. */
export interface ChartOptions {
  /** The statement whose figures are drawn. Default `"select $1::int + 1"`. */
  statement?: string;
  /** A line under the title (date, machine...). Default: none. */
  subtitle?: string;
}

/** One row of panels: a transport, and where its figures come from. */
interface Row {
  title: string;
  bench: string;
  /** The records of this row, from that bench's report. */
  pick: (r: BenchRecord) => boolean;
  /** Legend text per client, where it differs from the client's name. */
  labels?: Record<string, string>;
}

const ROWS: Row[] = [
  { title: "TCP, pool of 10", bench: "pool_query", pick: (r) => r.transport === "TCP" },
  {
    title: "WebSocket, pool of 10, through edgepool's gateway or websockify",
    bench: "transport",
    pick: (r) => r.transport === "WebSocket" || r.client === "edgepool TCP",
    labels: { "edgepool TCP": "edgepool TCP (reference)" },
  },
  {
    title: "HTTP, one POST per query to the gateway's /sql",
    bench: "transport",
    pick: (r) => r.transport === "HTTP",
  },
];

/** Fixed colours, so that a client looks the same in every panel: edgepool in blues. */
const COLORS: Record<string, string> = {
  "edgepool": "#1d4ed8",
  "edgepool TCP": "#93c5fd",
  "edgepool gateway": "#1d4ed8",
  "edgepool websockify": "#0e7490",
  "edgepool HttpPool": "#1d4ed8",
  "pg": "#d97706",
  "postgres.js": "#059669",
  "Neon Pool gateway": "#be185d",
  "Neon Pool websockify": "#f472b6",
  "Neon Pool gateway, no coalesceWrites": "#7c3aed",
  "neon()": "#be185d",
};
const SPARE_COLORS = ["#4b5563", "#b91c1c", "#65a30d", "#0891b2", "#a16207"];

const FONT = "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const TEXT = "#1f2937";
const MUTED = "#6b7280";
const GRID = "#e5e7eb";

const PANEL_W = 540;
const PANEL_H = 250;
const PLOT = { left: 56, right: 12, top: 22, bottom: 44 };
const MARGIN = 20;
const TITLE_H = 64;
const ROW_TITLE_H = 26;
const LEGEND_LINE_H = 18;

/**
 * Renders the chart.
 *
 * @param reports The JSON reports of the bench files, every runtime's.
 * @returns The SVG document.
 */
export function throughputChart(reports: BenchReport[], options: ChartOptions = {}): string {
  const statement = options.statement ?? "select $1::int + 1";
  const runtimes = [...new Set(reports.map((r) => r.runtime))];
  const rows = ROWS.map((row) => {
    const records = (runtime: string) =>
      reports
        .filter((r) => r.bench === row.bench && r.runtime === runtime)
        .flatMap((r) => r.records)
        .filter((r) => r.statement === statement && row.pick(r));
    const clients = [...new Set(runtimes.flatMap((rt) => records(rt).map((r) => r.client)))];
    return { row, clients, records };
  }).filter((r) => r.clients.length > 0);
  const callers = [
    ...new Set(reports.flatMap((r) => r.records.map((x) => x.callers))),
  ].sort((a, b) => a - b);

  const width = MARGIN * 2 + runtimes.length * PANEL_W;
  const out: string[] = [];
  let y = TITLE_H;
  let spare = 0;
  const colorOf = (client: string) => COLORS[client] ?? SPARE_COLORS[spare++ % SPARE_COLORS.length];
  for (const { row, clients, records } of rows) {
    const colors = new Map(clients.map((c) => [c, colorOf(c)]));
    out.push(text(MARGIN, y + 16, row.title, { size: 15, weight: "600" }));
    y += ROW_TITLE_H;
    // The legend, wrapped to the chart's width.
    let x = MARGIN;
    for (const client of clients) {
      const label = row.labels?.[client] ?? client;
      const w = 30 + label.length * 7;
      if (x + w > width - MARGIN) {
        x = MARGIN;
        y += LEGEND_LINE_H;
      }
      out.push(
        `<rect x="${x}" y="${y + 3}" width="11" height="11" rx="2" fill="${colors.get(client)}"/>`,
        text(x + 16, y + 13, label, { size: 12 }),
      );
      x += w;
    }
    y += LEGEND_LINE_H + 4;
    // One scale for the row, so that runtimes compare at a glance.
    const top = niceMax(Math.max(...runtimes.flatMap((rt) => records(rt).map((r) => r.qps))));
    for (const [i, runtime] of runtimes.entries()) {
      out.push(
        panel(MARGIN + i * PANEL_W, y, runtime, clients, colors, callers, records(runtime), top),
      );
    }
    y += PANEL_H + 18;
  }
  const height = y + MARGIN - 18;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="${FONT}" role="img" ` +
    `aria-label="${escape(`Queries per second by callers, ${statement}`)}">`,
    `<rect width="${width}" height="${height}" rx="8" fill="#ffffff"/>`,
    text(MARGIN, 30, `Throughput by concurrency: ${statement}`, { size: 18, weight: "700" }),
    text(
      MARGIN,
      50,
      "queries per second (median of 3 rounds; higher is better)" +
        (options.subtitle ? ` · ${options.subtitle}` : ""),
      { size: 12, fill: MUTED },
    ),
    ...out,
    "</svg>",
    "",
  ].join("\n");
}

/** One runtime's panel: a group of bars per number of callers, a bar per client. */
function panel(
  x0: number,
  y0: number,
  runtime: string,
  clients: string[],
  colors: Map<string, string>,
  callers: number[],
  records: BenchRecord[],
  top: number,
): string {
  const out: string[] = [];
  const left = x0 + PLOT.left;
  const right = x0 + PANEL_W - PLOT.right;
  const plotTop = y0 + PLOT.top;
  const bottom = y0 + PANEL_H - PLOT.bottom;
  const yOf = (qps: number) => bottom - (qps / top) * (bottom - plotTop);
  out.push(text(left, y0 + 12, runtime, { size: 13, weight: "600" }));
  for (const tick of ticks(top)) {
    const ty = yOf(tick);
    out.push(
      `<line x1="${left}" y1="${ty}" x2="${right}" y2="${ty}" stroke="${GRID}"/>`,
      text(left - 6, ty + 4, short(tick), { size: 11, fill: MUTED, anchor: "end" }),
    );
  }
  const groupW = (right - left) / callers.length;
  const barW = Math.min(28, (groupW * 0.8) / clients.length);
  for (const [g, n] of callers.entries()) {
    const center = left + groupW * (g + 0.5);
    const start = center - (barW * clients.length) / 2;
    for (const [c, client] of clients.entries()) {
      const record = records.find((r) => r.client === client && r.callers === n);
      if (record === undefined) continue;
      const bx = round(start + c * barW);
      const by = round(yOf(record.qps));
      out.push(
        `<rect x="${bx}" y="${by}" width="${round(barW - 2)}" height="${round(bottom - by)}" ` +
          `fill="${colors.get(client)}"><title>${
            escape(`${client}, ${n} callers: ${Math.round(record.qps)} q/s`)
          }</title></rect>`,
      );
      // The value, turned upright along the bar so that narrow bars keep it readable.
      const lx = round(bx + (barW - 2) / 2 + 3.5);
      out.push(
        text(lx, by - 4, short(record.qps), {
          size: 10,
          fill: TEXT,
          transform: `rotate(-90 ${lx} ${by - 4})`,
        }),
      );
    }
    out.push(
      text(center, bottom + 16, `${n} caller${n === 1 ? "" : "s"}`, { size: 12, anchor: "middle" }),
    );
  }
  out.push(
    `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="${MUTED}"/>`,
    text((left + right) / 2, bottom + 34, "concurrent callers", {
      size: 11,
      fill: MUTED,
      anchor: "middle",
    }),
    text(x0 + 14, (plotTop + bottom) / 2, "q/s", {
      size: 11,
      fill: MUTED,
      anchor: "middle",
      transform: `rotate(-90 ${x0 + 14} ${(plotTop + bottom) / 2})`,
    }),
  );
  return out.join("\n");
}

function text(
  x: number,
  y: number,
  content: string,
  o: { size: number; weight?: string; fill?: string; anchor?: string; transform?: string },
): string {
  return `<text x="${round(x)}" y="${round(y)}" font-size="${o.size}" fill="${o.fill ?? TEXT}"` +
    (o.weight ? ` font-weight="${o.weight}"` : "") +
    (o.anchor ? ` text-anchor="${o.anchor}"` : "") +
    (o.transform ? ` transform="${o.transform}"` : "") +
    `>${escape(content)}</text>`;
}

/** The smallest 1, 2 or 5 times a power of ten at or above `value`, with headroom for labels. */
function niceMax(value: number): number {
  const target = Math.max(value * 1.18, 1);
  const power = 10 ** Math.floor(Math.log10(target));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((v) => v >= target)!;
}

function ticks(top: number): number[] {
  const step = top / 5;
  return Array.from({ length: 6 }, (_, i) => i * step);
}

/** 12,345 as "12.3k". */
function short(value: number): string {
  if (value >= 1000) {
    const whole = value >= 100_000 || value % 1000 === 0;
    return `${(value / 1000).toFixed(whole ? 0 : 1)}k`;
  }
  return String(Math.round(value));
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function escape(value: string): string {
  return value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

if (import.meta.main) {
  const reports = Deno.args.map((file) => JSON.parse(Deno.readTextFileSync(file)) as BenchReport);
  if (reports.length === 0) throw new Error("usage: chart.ts REPORT.json... > throughput.svg");
  Deno.stdout.writeSync(new TextEncoder().encode(throughputChart(reports)));
}
