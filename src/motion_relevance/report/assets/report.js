// motion-relevance interactive report. Self-contained: no network, no libraries.
// The sigma computation mirrors motion_relevance/report/viewer.py operation for operation
// (exact integer sums, then the same IEEE double steps in the same order), so the numbers
// shown here equal viewer_stats() in Python at every sigma.
(() => {
  "use strict";
  const meta = JSON.parse(document.getElementById("mr-meta").textContent);
  const [MAP_H, MAP_W] = meta.map_size;
  const HW = MAP_H * MAP_W;
  const [DISP_H, DISP_W] = meta.display;
  const NFRAMES = meta.frames;
  const LUT = meta.colormap;
  const status = document.getElementById("mr-status");
  const frameInput = document.getElementById("mr-frame");
  const frameLabel = document.getElementById("mr-frame-label");
  const sigmaInput = document.getElementById("mr-sigma");
  const sigmaLabel = document.getElementById("mr-sigma-label");
  const playButton = document.getElementById("mr-play");
  const images = Array.from(document.querySelectorAll("#mr-frames img"));

  function bytesOf(id) {
    const text = document.getElementById(id).textContent;
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function inflate(id) {
    const stream = new Blob([bytesOf(id)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }

  // Each window's uint16 samples are stored low bytes first, then high bytes (html.py _shuffle).
  function unshuffle16(bytes, offset, count, out) {
    const lo = 2 * offset;
    const hi = lo + count;
    for (let i = 0; i < count; i++) out[offset + i] = bytes[lo + i] | (bytes[hi + i] << 8);
  }

  // Unbiased std of integer data from exact sums: float(n*S2 - S1^2) / float(n*(n-1)), sqrt.
  function quantisedStd(q, offset, n, rowLength) {
    if (n < 2) return 0;
    let s1 = 0n;
    let s2 = 0n;
    for (let row = offset; row < offset + n; row += rowLength) {
      let a = 0;
      let b = 0; // a row of uint16 squares stays far below 2^53: exact
      for (let i = row; i < row + rowLength; i++) {
        const v = q[i];
        a += v;
        b += v * v;
      }
      s1 += BigInt(a);
      s2 += BigInt(b);
    }
    const N = BigInt(n);
    return Math.sqrt(Number(N * s2 - s1 * s1) / Number(N * (N - 1n)));
  }

  class MethodView {
    constructor(index, info) {
      this.index = index;
      this.info = info;
      this.name = info.name;
      this.canvas = {};
      for (const kind of ["orig", "base", "motion", "static"]) {
        const c = document.getElementById(`mr-${index}-${kind}`);
        c.width = DISP_W;
        c.height = DISP_H;
        this.canvas[kind] = c;
      }
      this.plot = document.getElementById(`mr-${index}-plot`);
      this.shareOut = document.getElementById(`mr-${index}-share`);
      this.maskOut = document.getElementById(`mr-${index}-mask`);
      this.heat = document.createElement("canvas");
      this.heat.width = MAP_W;
      this.heat.height = MAP_H;
      this.heatImage = this.heat.getContext("2d").createImageData(MAP_W, MAP_H);
    }

    async load() {
      const [d, m, e] = await Promise.all(
        ["d", "m", "e"].map((key) => inflate(`mr-${this.index}-${key}`)),
      );
      const dBytes = new Uint8Array(d);
      const mBytes = new Uint8Array(m);
      this.e = new Int8Array(e);
      if (dBytes.length % 2 || mBytes.length % 2) throw new Error(`data of ${this.name} are truncated`);
      this.d = new Uint16Array(dBytes.length / 2);
      this.m = new Uint16Array(mBytes.length / 2);
      this.owner = new Array(NFRAMES);
      let dOffset = 0;
      let oOffset = 0;
      this.windows = this.info.windows.map((w, k) => {
        const win = { ...w, dOffset, oOffset };
        unshuffle16(dBytes, dOffset, w.length * HW, this.d);
        unshuffle16(mBytes, oOffset, w.num_owned * HW, this.m);
        win.std = quantisedStd(this.d, dOffset, w.length * HW, MAP_W);
        for (let f = 0; f < w.num_owned; f++) this.owner[w.frame_start + f] = [k, f];
        dOffset += w.length * HW;
        oOffset += w.num_owned * HW;
        return win;
      });
      if (dOffset !== this.d.length || oOffset !== this.m.length || oOffset !== this.e.length) {
        throw new Error(`data of ${this.name} do not match its windows`);
      }
      this.mask = new Uint8Array(oOffset);
      this.frameTotal = new Float64Array(NFRAMES);
      this.frameMotion = new Float64Array(NFRAMES);
    }

    // The motion mask and motion share at sigma (viewer.py: viewer_stats).
    update(sigma) {
      let kept = 0;
      let total = 0;
      let maskVoxels = 0;
      let voxels = 0;
      for (const w of this.windows) {
        const threshold = sigma * w.std;
        let keptInt = 0;
        let totalInt = 0;
        for (let f = 0; f < w.num_owned; f++) {
          const dBase = w.dOffset + (w.first_owned + f) * HW;
          const oBase = w.oOffset + f * HW;
          let fKept = 0;
          let fTotal = 0;
          for (let i = 0; i < HW; i++) {
            const mv = this.m[oBase + i];
            fTotal += mv;
            if (this.d[dBase + i] > threshold) {
              this.mask[oBase + i] = 1;
              fKept += mv;
              maskVoxels++;
            } else {
              this.mask[oBase + i] = 0;
            }
          }
          this.frameTotal[w.frame_start + f] = w.m_scale * fTotal;
          this.frameMotion[w.frame_start + f] = w.m_scale * fKept;
          keptInt += fKept;
          totalInt += fTotal;
        }
        kept += w.m_scale * keptInt;
        total += w.m_scale * totalInt;
        voxels += w.num_owned * HW;
      }
      this.stats = {
        sigma,
        motion_share: total > 0 ? kept / total : 0,
        kept,
        total,
        mask_voxels: maskVoxels,
        voxels,
        stds: this.windows.map((w) => w.std),
      };
      this.shareOut.textContent = `${(100 * this.stats.motion_share).toFixed(1)}%`;
      this.shareOut.dataset.value = String(this.stats.motion_share);
      this.maskOut.textContent = `${((100 * maskVoxels) / Math.max(1, voxels)).toFixed(1)}%`;
      this.maskOut.dataset.value = String(maskVoxels);
    }

    drawFrame(ctx, frame) {
      ctx.drawImage(images[frame], 0, 0, DISP_W, DISP_H);
    }

    boxRect() {
      const [top, left, h, w] = meta.box;
      return [left * DISP_W, top * DISP_H, w * DISP_W, h * DISP_H];
    }

    dimOutside(ctx) {
      const [x, y, w, h] = this.boxRect();
      ctx.save();
      ctx.fillStyle = "rgba(0,0,0,0.45)";
      ctx.beginPath();
      ctx.rect(0, 0, DISP_W, DISP_H);
      ctx.rect(x, y, w, h);
      ctx.fill("evenodd");
      ctx.restore();
    }

    // kind: 0 base, 1 motion (inside the mask), 2 static (outside it)
    drawHeat(ctx, frame, kind) {
      const [k, f] = this.owner[frame];
      const w = this.windows[k];
      const base = w.oOffset + f * HW;
      // One scale per method over the whole video (its high percentile of |R|), clipped above.
      const gain = w.e_scale / (this.info.display_max || w.display_max);
      const px = this.heatImage.data;
      for (let i = 0; i < HW; i++) {
        const inMask = this.mask[base + i] === 1;
        let x = kind === 1 && !inMask ? 0 : kind === 2 && inMask ? 0 : this.e[base + i] * gain;
        x = Math.max(-1, Math.min(1, x));
        x = Math.sign(x) * Math.pow(Math.abs(x), meta.gamma); // overlay.py colorize: colour and opacity
        const rgb = LUT[Math.round((x + 1) * 127.5)];
        px[4 * i] = rgb[0];
        px[4 * i + 1] = rgb[1];
        px[4 * i + 2] = rgb[2];
        px[4 * i + 3] = Math.round(255 * meta.alpha * Math.abs(x));
      }
      this.heat.getContext("2d").putImageData(this.heatImage, 0, 0);
      this.drawFrame(ctx, frame);
      this.dimOutside(ctx);
      const [x, y, bw, bh] = this.boxRect();
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(this.heat, x, y, bw, bh);
    }

    render(frame) {
      this.drawFrame(this.canvas.orig.getContext("2d"), frame);
      this.drawHeat(this.canvas.base.getContext("2d"), frame, 0);
      this.drawHeat(this.canvas.motion.getContext("2d"), frame, 1);
      this.drawHeat(this.canvas.static.getContext("2d"), frame, 2);
      this.renderPlot(frame);
    }

    renderPlot(frame) {
      const c = this.plot;
      const ctx = c.getContext("2d");
      const W = c.width;
      const H = c.height;
      const pad = 28;
      ctx.clearRect(0, 0, W, H);
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, W, H);
      let top = 0;
      for (let f = 0; f < NFRAMES; f++) top = Math.max(top, this.frameTotal[f]);
      top = top > 0 ? top : 1;
      const xOf = (f) => pad + (NFRAMES > 1 ? (f / (NFRAMES - 1)) * (W - 2 * pad) : (W - 2 * pad) / 2);
      const yOf = (v) => H - pad + 6 - (v / top) * (H - pad - 8);
      const line = (values, colour, fill) => {
        ctx.beginPath();
        for (let f = 0; f < NFRAMES; f++) {
          const x = xOf(f);
          const y = yOf(values[f]);
          if (f === 0) ctx.moveTo(x, y);
          else ctx.lineTo(x, y);
        }
        if (fill) {
          ctx.lineTo(xOf(NFRAMES - 1), yOf(0));
          ctx.lineTo(xOf(0), yOf(0));
          ctx.closePath();
          ctx.fillStyle = fill;
          ctx.fill();
        } else {
          ctx.strokeStyle = colour;
          ctx.lineWidth = 2;
          ctx.stroke();
        }
      };
      line(this.frameTotal, "#555", "rgba(120,120,120,0.25)");
      line(this.frameTotal, "#555");
      line(this.frameMotion, "#c0392b", "rgba(192,57,43,0.25)");
      line(this.frameMotion, "#c0392b");
      ctx.strokeStyle = "#1f77b4";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(xOf(frame), 4);
      ctx.lineTo(xOf(frame), H - pad + 6);
      ctx.stroke();
      ctx.fillStyle = "#222";
      ctx.font = "12px sans-serif";
      ctx.fillText("total relevance Σ|R| per frame", pad + 4, 14);
      ctx.fillStyle = "#c0392b";
      ctx.fillText("motion part", pad + 200, 14);
      ctx.fillStyle = "#222";
      ctx.fillText("frame 0", pad, H - 6);
      ctx.fillText(`frame ${NFRAMES - 1}`, W - pad - 60, H - 6);
    }
  }

  const views = meta.methods.map((info, i) => new MethodView(i, info));
  let frame = 0;
  let sigma = meta.sigma;
  let playing = false;
  let last = 0;

  function setFrame(f) {
    frame = Math.max(0, Math.min(NFRAMES - 1, Math.round(f)));
    frameInput.value = String(frame);
    const t = (meta.first_index + frame) / meta.video.fps;
    frameLabel.textContent = `${frame + 1}/${NFRAMES} (t = ${t.toFixed(2)} s)`;
    for (const v of views) v.render(frame);
  }

  function setSigma(s) {
    sigma = Number(s);
    sigmaLabel.textContent = sigma.toFixed(2);
    for (const v of views) v.update(sigma);
    for (const v of views) v.render(frame);
  }

  function tick(now) {
    if (!playing) return;
    if (now - last >= 1000 / meta.video.fps) {
      last = now;
      setFrame((frame + 1) % NFRAMES);
    }
    requestAnimationFrame(tick);
  }

  function hashParams() {
    const out = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const [k, v] = part.split("=");
      if (k && v !== undefined && Number.isFinite(Number(v))) out[k] = Number(v);
    }
    return out;
  }

  async function start() {
    await Promise.all(images.map((img) => (img.complete ? img.decode().catch(() => {}) : img.decode())));
    await Promise.all(views.map((v) => v.load()));
    frameInput.max = String(NFRAMES - 1);
    const params = hashParams();
    if (params.sigma !== undefined) sigmaInput.value = String(params.sigma);
    frameInput.addEventListener("input", () => setFrame(Number(frameInput.value)));
    sigmaInput.addEventListener("input", () => setSigma(Number(sigmaInput.value)));
    playButton.addEventListener("click", () => {
      playing = !playing;
      playButton.textContent = playing ? "pause" : "play";
      if (playing) requestAnimationFrame(tick);
    });
    window.addEventListener("hashchange", () => {
      const p = hashParams();
      if (p.sigma !== undefined) {
        sigmaInput.value = String(p.sigma);
        setSigma(Number(sigmaInput.value));
      }
      if (p.frame !== undefined) setFrame(p.frame);
    });
    frame = params.frame !== undefined ? params.frame : 0;
    setSigma(Number(sigmaInput.value));
    setFrame(frame);
    status.textContent = "";
    document.body.dataset.ready = "1";
  }

  const ready = start().catch((err) => {
    status.textContent = `error: ${err.message}`;
    document.body.dataset.ready = "error";
    throw err;
  });

  window.motionReport = {
    ready,
    setSigma: (s) => {
      sigmaInput.value = String(s);
      setSigma(Number(sigmaInput.value));
    },
    setFrame,
    stats: () => ({
      sigma,
      frame,
      methods: Object.fromEntries(views.map((v) => [v.name, v.stats])),
    }),
  };
})();
