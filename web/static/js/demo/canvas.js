// The drawing pad: pointer strokes (mouse, pen, touch) on a square canvas,
// read back as the model's input grid.
//
// The canvas's pixels are transparent with ink painted over them, so a
// pixel's alpha is its ink. The model wants sklearn's digits: 8x8 cells,
// each the share of its 4x4 block of a 32x32 bitmap that is ink (0..16,
// divided by 16). `toGrid` does the same on the canvas: the mean alpha of
// each cell's pixels, in [0, 1]. The canvas keeps a fixed resolution (a
// multiple of the grid) whatever its size on screen; pointer positions are
// scaled from CSS pixels to it.

export const GRID = 8;
const RESOLUTION = 280; // 35 canvas pixels a cell
const BRUSH = 0.85; // stroke width, in cells
const INK = "#14213d";

export class DrawingPad {
  /** `onChange()` is called while drawing (once a frame at most) and on clear. */
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.onChange = onChange;
    canvas.width = RESOLUTION;
    canvas.height = RESOLUTION;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.ctx.lineCap = "round";
    this.ctx.lineJoin = "round";
    this.ctx.strokeStyle = INK;
    this.ctx.fillStyle = INK;
    this.ctx.lineWidth = (RESOLUTION / GRID) * BRUSH;
    this.last = null;
    this.pointer = null;
    this.frame = 0;
    this.strokes = 0;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointercancel", (e) => this.up(e));
  }

  /** A pointer position in canvas pixels (the content box, inside the border). */
  at(event) {
    const box = this.canvas.getBoundingClientRect();
    const c = this.canvas;
    return {
      x: ((event.clientX - box.left - c.clientLeft) / c.clientWidth) * RESOLUTION,
      y: ((event.clientY - box.top - c.clientTop) / c.clientHeight) * RESOLUTION,
    };
  }

  down(event) {
    if (event.button !== 0 || this.pointer !== null) return;
    event.preventDefault();
    this.pointer = event.pointerId;
    this.canvas.setPointerCapture(event.pointerId);
    this.last = this.at(event);
    this.ctx.beginPath();
    this.ctx.arc(this.last.x, this.last.y, this.ctx.lineWidth / 2, 0, 2 * Math.PI);
    this.ctx.fill();
    this.changed();
  }

  move(event) {
    if (event.pointerId !== this.pointer) return;
    event.preventDefault();
    // Coalesced events: every position the pointer went through, not only
    // the one per frame, so fast strokes stay smooth.
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of points.length ? points : [event]) {
      const p = this.at(e);
      this.ctx.beginPath();
      this.ctx.moveTo(this.last.x, this.last.y);
      this.ctx.lineTo(p.x, p.y);
      this.ctx.stroke();
      this.last = p;
    }
    this.changed();
  }

  up(event) {
    if (event.pointerId !== this.pointer) return;
    this.pointer = null;
    this.last = null;
    this.strokes += 1;
    this.changed(true);
  }

  clear() {
    this.ctx.clearRect(0, 0, RESOLUTION, RESOLUTION);
    this.strokes = 0;
    this.changed(true);
  }

  changed(now = false) {
    if (now) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      this.onChange();
      return;
    }
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.onChange();
    });
  }

  /** The drawing as GRID x GRID mean ink per cell, row-major, in [0, 1]. */
  toGrid() {
    const { data } = this.ctx.getImageData(0, 0, RESOLUTION, RESOLUTION);
    const cell = RESOLUTION / GRID;
    const sums = new Float64Array(GRID * GRID);
    for (let y = 0; y < RESOLUTION; y++) {
      const row = Math.floor(y / cell) * GRID;
      for (let x = 0; x < RESOLUTION; x++) {
        sums[row + Math.floor(x / cell)] += data[(y * RESOLUTION + x) * 4 + 3];
      }
    }
    return Array.from(sums, (s) => s / (cell * cell * 255));
  }
}

/** Paint a grid (values in [0, 1]) on a small canvas, one block per cell. */
export function paintGrid(canvas, grid) {
  const size = canvas.width;
  const ctx = canvas.getContext("2d");
  const cell = size / GRID;
  ctx.clearRect(0, 0, size, size);
  for (let i = 0; i < grid.length; i++) {
    const shade = Math.round(255 * (1 - grid[i]));
    ctx.fillStyle = `rgb(${shade}, ${shade}, ${shade})`;
    ctx.fillRect((i % GRID) * cell, Math.floor(i / GRID) * cell, cell, cell);
  }
}
