// nanomlp serve: the drawing page. White ink on a black pad, as in MNIST; the pad is sent as a
// PNG to POST /api/predict, where the server runs the very preprocessing of `nanomlp predict`.
// Predictions are asked for at most every 100 ms while drawing, one request at a time (the
// newest drawing wins), and once more when the pen lifts.
'use strict';

(() => {
  const THROTTLE_MS = 100;
  const BRUSH = 18; // stroke width in pad pixels (the pad is 280 x 280)

  const pad = document.getElementById('pad');
  const ctx = pad.getContext('2d');
  const seen = document.getElementById('seen');
  const seenCtx = seen.getContext('2d');
  const hint = document.getElementById('hint');
  const predictionEl = document.getElementById('prediction');
  const confidenceEl = document.getElementById('confidence');
  const barsEl = document.getElementById('bars');
  const statusEl = document.getElementById('status');

  let labels = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
  let bars = [];

  // Drawing state.
  let activePointer = null;
  let last = null;
  let hasInk = false;
  let strokes = 0; // finished strokes since the page loaded

  // Request state.
  let inFlight = false;
  let dirty = false; // the pad changed since the last request was sent
  let timer = null;
  let lastSent = -Infinity;
  let generation = 0; // bumped by Clear: answers for an older drawing are dropped

  function updateState() {
    document.body.dataset.state = inFlight || dirty || timer !== null ? 'busy' : 'idle';
  }

  // ---- the pad ----------------------------------------------------------------------------

  function resetPad() {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = '#fff';
    ctx.fillStyle = '#fff';
    ctx.lineWidth = BRUSH;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    hasInk = false;
  }

  function padPoint(e) {
    const r = pad.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) * pad.width) / r.width,
      y: ((e.clientY - r.top) * pad.height) / r.height,
    };
  }

  function dot(p) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, BRUSH / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function segment(a, b) {
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }

  pad.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    if (activePointer !== null) return;
    e.preventDefault();
    activePointer = e.pointerId;
    pad.setPointerCapture(e.pointerId);
    last = padPoint(e);
    dot(last);
    hasInk = true;
    hint.classList.add('hidden');
    schedule(false);
  });

  pad.addEventListener('pointermove', (e) => {
    if (e.pointerId !== activePointer) return;
    e.preventDefault();
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = padPoint(ev);
      segment(last, p);
      last = p;
    }
    schedule(false);
  });

  function endStroke(e) {
    if (e.pointerId !== activePointer) return;
    activePointer = null;
    last = null;
    strokes += 1;
    document.body.dataset.strokes = String(strokes);
    schedule(true);
  }
  pad.addEventListener('pointerup', endStroke);
  pad.addEventListener('pointercancel', endStroke);

  function clearAll() {
    generation += 1;
    activePointer = null;
    dirty = false;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    resetPad();
    hint.classList.remove('hidden');
    showBlank();
    document.body.dataset.shown = String(strokes);
    updateState();
  }

  document.getElementById('clear').addEventListener('click', clearAll);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' || e.key === 'Delete' || e.key === 'Backspace') {
      e.preventDefault();
      clearAll();
    }
  });

  // ---- asking the server ------------------------------------------------------------------

  // Marks the pad as changed and sends it now (immediate) or at most THROTTLE_MS after the
  // last request; never more than one request at a time.
  function schedule(immediate) {
    if (!hasInk) return;
    dirty = true;
    if (!inFlight) {
      const wait = immediate ? 0 : Math.max(0, lastSent + THROTTLE_MS - performance.now());
      if (wait === 0) {
        if (timer !== null) clearTimeout(timer);
        timer = null;
        send();
      } else if (timer === null) {
        timer = setTimeout(() => {
          timer = null;
          if (dirty && !inFlight) send();
          updateState();
        }, wait);
      }
    }
    updateState();
  }

  function padAsPng() {
    return new Promise((resolve, reject) => {
      pad.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('cannot encode the pad'))),
        'image/png');
    });
  }

  async function send() {
    dirty = false;
    inFlight = true;
    lastSent = performance.now();
    updateState();
    const gen = generation;
    const strokesAtSend = strokes;
    const t0 = performance.now();
    try {
      const body = await padAsPng(); // a copy of the pad as it is now
      const res = await fetch('/api/predict', {
        method: 'POST',
        headers: { 'Content-Type': 'image/png' },
        body,
      });
      const answer = await res.json();
      if (gen === generation) {
        if (res.ok) {
          showAnswer(answer, performance.now() - t0);
        } else {
          showError(answer.error || `HTTP ${res.status}`);
        }
        document.body.dataset.shown = String(strokesAtSend);
      }
    } catch (err) {
      if (gen === generation) showError(`no answer from the server (${err.message})`);
    } finally {
      inFlight = false;
      if (dirty) schedule(false);
      updateState();
    }
  }

  // ---- showing the answer -----------------------------------------------------------------

  function buildBars() {
    barsEl.textContent = '';
    bars = labels.map((label) => {
      const li = document.createElement('li');
      const name = document.createElement('span');
      name.className = 'label';
      name.textContent = label;
      const track = document.createElement('div');
      track.className = 'track';
      const fill = document.createElement('div');
      fill.className = 'fill';
      track.appendChild(fill);
      const pct = document.createElement('span');
      pct.className = 'pct';
      pct.textContent = '–';
      li.append(name, track, pct);
      barsEl.appendChild(li);
      return { li, fill, pct };
    });
  }

  function percent(p) {
    const v = 100 * p;
    return v >= 99.95 || v < 0.05 ? `${v.toFixed(0)}%` : `${v.toFixed(1)}%`;
  }

  function showAnswer(answer, ms) {
    const probs = answer.probabilities;
    predictionEl.textContent = answer.label;
    predictionEl.classList.toggle('long', answer.label.length > 2); // fashion-mnist's names
    predictionEl.dataset.cls = String(answer.class);
    confidenceEl.textContent = `${percent(probs[answer.class])} sure`;
    bars.forEach((bar, k) => {
      const p = probs[k] || 0;
      bar.fill.style.width = `${(100 * p).toFixed(2)}%`;
      bar.pct.textContent = percent(p);
      bar.li.classList.toggle('top', k === answer.class);
    });
    if (Array.isArray(answer.pixels)) drawSeen(answer.pixels);
    statusEl.classList.remove('error');
    statusEl.textContent = `answered in ${ms.toFixed(0)} ms`;
  }

  function showBlank() {
    predictionEl.textContent = '–';
    delete predictionEl.dataset.cls;
    confidenceEl.textContent = 'draw to start';
    for (const bar of bars) {
      bar.fill.style.width = '0';
      bar.pct.textContent = '–';
      bar.li.classList.remove('top');
    }
    seenCtx.fillStyle = '#000';
    seenCtx.fillRect(0, 0, seen.width, seen.height);
    statusEl.classList.remove('error');
    statusEl.textContent = '';
  }

  function showError(message) {
    predictionEl.textContent = '?';
    delete predictionEl.dataset.cls;
    confidenceEl.textContent = 'no answer';
    statusEl.classList.add('error');
    statusEl.textContent = message;
  }

  function drawSeen(pixels) {
    const img = seenCtx.createImageData(28, 28);
    for (let i = 0; i < 784; i += 1) {
      const v = pixels[i];
      img.data[4 * i] = v;
      img.data[4 * i + 1] = v;
      img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    seenCtx.putImageData(img, 0, 0);
  }

  // ---- the model --------------------------------------------------------------------------

  async function loadModel() {
    const line = document.getElementById('model-line');
    try {
      const res = await fetch('/api/model');
      const model = await res.json();
      if (!res.ok) throw new Error(model.error || `HTTP ${res.status}`);
      labels = model.classes;
      buildBars();
      const params = Number(model.parameters).toLocaleString('en');
      line.textContent =
        `${model.file}: ${model.description} · ${params} parameters · trained on ${model.dataset}`;
      document.getElementById('summary').textContent = model.summary;
      if (model.dataset !== 'mnist') {
        document.getElementById('title').textContent = 'Draw a piece of clothing';
        hint.textContent = 'Draw here';
        document.title = 'nanomlp · draw';
      }
    } catch (err) {
      line.textContent = `Cannot load the model summary (${err.message})`;
    }
  }

  resetPad();
  buildBars();
  showBlank();
  document.body.dataset.strokes = '0';
  document.body.dataset.shown = '0';
  loadModel().finally(updateState);
})();
