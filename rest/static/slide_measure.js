// Sizes on a slide: shape lengths and areas, the scale bar's length, and the microscope
// magnification a zoom corresponds to, all from the slide's microns per pixel (mpp).
// Magnification follows the scanners' convention: 10x is 1 µm per pixel on screen, so a slide
// scanned at 0.25 µm per pixel is "40x" at one image pixel per screen pixel.

export const MAGNIFICATIONS = [1.25, 2.5, 5, 10, 20, 40];
const MICRONS_AT_10X = 10;

// The magnification of one image pixel per screen pixel; null without a calibration.
export function nativeMagnification(mpp) {
  return mpp ? MICRONS_AT_10X / mpp : null;
}

// Screen pixels per image pixel that show the slide at `magnification`.
export function imageZoomFor(magnification, mpp) {
  return magnification / nativeMagnification(mpp);
}

// The presets a slide offers: none beyond what it was scanned at.
export function presetsFor(mpp) {
  const native = nativeMagnification(mpp);
  return native ? MAGNIFICATIONS.filter((m) => m <= native * 1.01) : [];
}

// A scale bar of a round length (1, 2 or 5 times a power of ten µm) at most `maxPixels` wide.
export function scaleBar(micronsPerPixel, maxPixels = 140) {
  const longest = micronsPerPixel * maxPixels;
  const power = 10 ** Math.floor(Math.log10(longest));
  const microns = [5, 2, 1].map((m) => m * power).find((v) => v <= longest);
  return { microns, pixels: microns / micronsPerPixel, text: lengthText(microns) };
}

export function lengthText(microns) {
  if (microns >= 1000) return `${+(microns / 1000).toPrecision(4)} mm`;
  return `${+microns.toPrecision(microns >= 100 ? 4 : 3)} µm`;
}

export function areaText(squareMicrons) {
  return `${+(squareMicrons / 1e6).toPrecision(3)} mm²`;
}

// The shape's points in microns (or in pixels when the slide has no calibration).
function scaled(points, mpp) {
  const [sx, sy] = mpp.x && mpp.y ? [mpp.x, mpp.y] : [1, 1];
  return points.map(([x, y]) => [x * sx, y * sy]);
}

function polygonArea(points) {
  let twice = 0;
  points.forEach(([x0, y0], i) => {
    const [x1, y1] = points[(i + 1) % points.length];
    twice += x0 * y1 - x1 * y0;
  });
  return Math.abs(twice) / 2;
}

function boxCorners(points) {
  const [[x0, y0], [x1, y1]] = points;
  return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
}

// What a shape measures: {length} in µm for lines, {area} in µm² for closed shapes, in pixel
// units instead when the slide has no mpp (then `calibrated` is false). Points: none.
export function measure(shape, mpp) {
  const calibrated = Boolean(mpp.x && mpp.y);
  const pts = scaled(shape.points, mpp);
  if (shape.type === "line") {
    let length = 0;
    for (let i = 1; i < pts.length; i += 1) {
      length += Math.hypot(pts[i][0] - pts[i - 1][0], pts[i][1] - pts[i - 1][1]);
    }
    return { length, calibrated };
  }
  if (shape.type === "polygon") return { area: polygonArea(pts), calibrated };
  if (shape.type === "rectangle") {
    return { area: polygonArea(pts.length === 2 ? boxCorners(pts) : pts), calibrated };
  }
  if (shape.type === "ellipse") {
    if (pts.length === 4) {
      const [a, b, c, d] = pts;
      const axis1 = Math.hypot(b[0] - a[0], b[1] - a[1]);
      const axis2 = Math.hypot(d[0] - c[0], d[1] - c[1]);
      return { area: Math.PI * axis1 * axis2 / 4, calibrated };
    }
    const [[x0, y0], [x1, y1]] = pts;
    return { area: Math.PI * Math.abs(x1 - x0) * Math.abs(y1 - y0) / 4, calibrated };
  }
  return { calibrated };
}

export function measureText(shape, mpp) {
  const m = measure(shape, mpp);
  if (m.length !== undefined) {
    return m.calibrated ? lengthText(m.length) : `${Math.round(m.length)} px`;
  }
  if (m.area !== undefined) return m.calibrated ? areaText(m.area) : `${Math.round(m.area)} px²`;
  return "";
}
