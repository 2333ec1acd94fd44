import { useEffect, useRef } from 'preact/hooks'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

export interface Series {
  label: string
  values: number[]
}

const COLORS = ['#1f4e79', '#c2410c', '#15803d', '#7e22ce']

/**
 * A time series chart (uPlot): one x value per bucket (unix seconds), one line per series. The
 * numbers themselves are in the table beside it, for readers who cannot see the chart.
 */
export function TimeChart({ title, x, series, id }: { title: string; x: number[]; series: Series[]; id: string }) {
  const host = useRef<HTMLDivElement>(null)
  useEffect(() => {
    const el = host.current
    if (!el) return
    const plot = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 220,
        series: [
          {},
          ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: x.length <= 31 } })),
        ],
        scales: { x: { time: true } },
        axes: [{}, { size: 70 }],
        legend: { live: false },
      },
      [x, ...series.map((s) => s.values)],
      el,
    )
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }))
    resize.observe(el)
    return () => {
      resize.disconnect()
      plot.destroy()
    }
  }, [x, series])
  return (
    <figure class="chart" data-chart={id}>
      <figcaption>{title}</figcaption>
      <div
        ref={host}
        role="img"
        aria-label={`${title}: ${series.map((s) => `${s.label} ${s.values.reduce((a, b) => a + b, 0)} in all`).join(', ')}`}
      />
    </figure>
  )
}
