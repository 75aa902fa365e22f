// The participant page: consent, then blind ratings, then "which is human" pairs.
(function () {
  "use strict";

  const QUESTIONS = {
    overall: ["Overall quality", "bad", "excellent"],
    musicality: ["Musicality: melody, rhythm and phrasing make musical sense", "not at all", "completely"],
    human_likeness: ["Could a person have written this?", "surely a computer", "surely a person"],
  };

  const $ = id => document.getElementById(id);
  let plan = null, players = [];

  function show(section) {
    for (const id of ["consent", "rate", "pair", "done"]) $(id).hidden = id !== section;
    $("status").textContent = "";
  }

  function status(text) { $("status").textContent = text; }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    return { status: response.status, data };
  }

  function formatTime(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function stopAll() { players.forEach(p => p.stop()); }

  // Fills `box` with a player for one sample: <audio> for rendered audio, else the synth.
  async function mountPlayer(box, sid) {
    box.textContent = "";
    const media = plan.media[sid];
    if (media.kind === "audio") {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "auto";
      audio.src = media.audio;
      audio.addEventListener("play", () => { stopAll(); });
      box.appendChild(audio);
      players.push({ stop: () => audio.pause() });
      return;
    }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "play";
    button.textContent = "Loading…";
    button.disabled = true;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    bar.appendChild(fill);
    const time = document.createElement("span");
    time.className = "time";
    box.append(button, bar, time);
    try {
      const response = await fetch(media.midi);
      if (!response.ok) throw new Error("HTTP " + response.status);
      const song = ListenSynth.parseMidi(await response.arrayBuffer());
      const player = new ListenSynth.Player(song);
      players.push(player);
      player.onstate = playing => { button.textContent = playing ? "Stop" : "Play"; };
      player.onprogress = (t, total) => {
        fill.style.width = (total ? Math.min(100, 100 * t / total) : 0) + "%";
        time.textContent = formatTime(t) + " / " + formatTime(total);
      };
      player.onprogress(0, song.duration);
      button.dataset.notes = String(song.notes.length);
      button.textContent = "Play";
      button.disabled = false;
      button.addEventListener("click", () => {
        if (player.playing) player.stop();
        else { stopAll(); player.play(); }
      });
    } catch (err) {
      button.textContent = "Audio unavailable";
      status("Could not load this piece's audio (" + err.message + ").");
    }
  }

  function buildQuestions() {
    const box = $("questions");
    box.textContent = "";
    for (const q of plan.questions) {
      const [text, low, high] = QUESTIONS[q] || [q, "1", "5"];
      const fieldset = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = text;
      const scale = document.createElement("div");
      scale.className = "scale";
      const lowLabel = document.createElement("span");
      lowLabel.className = "end";
      lowLabel.textContent = low;
      scale.appendChild(lowLabel);
      for (let v = 1; v <= 5; v++) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "radio";
        input.name = "q-" + q;
        input.id = "q-" + q + "-" + v;
        input.value = String(v);
        input.required = true;
        label.append(input, String(v));
        scale.appendChild(label);
      }
      const highLabel = document.createElement("span");
      highLabel.className = "end";
      highLabel.textContent = high;
      scale.appendChild(highLabel);
      fieldset.append(legend, scale);
      box.appendChild(fieldset);
    }
  }

  function answers() {
    const scores = {};
    for (const q of plan.questions) {
      const checked = document.querySelector('input[name="q-' + q + '"]:checked');
      if (!checked) return null;
      scores[q] = Number(checked.value);
    }
    return scores;
  }

  let pieceIndex = 0, pairIndex = 0;

  function showPiece() {
    stopAll();
    players = [];
    if (pieceIndex >= plan.pieces.length) { showPair(); return; }
    show("rate");
    const sid = plan.pieces[pieceIndex];
    $("rate-progress").textContent = "Piece " + (pieceIndex + 1) + " of " + plan.pieces.length;
    const svg = plan.media[sid].svg;
    $("rate-sheet").closest("details").hidden = !svg;
    if (svg) $("rate-sheet").src = svg; else $("rate-sheet").removeAttribute("src");
    $("rate-form").reset();
    $("submit-rating").disabled = true;
    $("rate-form").dataset.sample = sid;
    mountPlayer($("rate-player"), sid);
  }

  function showPair() {
    stopAll();
    players = [];
    if (pairIndex >= plan.pairs.length) { show("done"); return; }
    show("pair");
    const [a, b] = plan.pairs[pairIndex];
    $("pair-progress").textContent = "Pair " + (pairIndex + 1) + " of " + plan.pairs.length;
    $("pair").dataset.pair = a + "," + b;
    mountPlayer($("player-a"), a);
    mountPlayer($("player-b"), b);
  }

  let busy = false;
  async function choose(index) {
    if (busy) return;  // a double click must not skip the next pair
    busy = true;
    try {
      const pair = plan.pairs[pairIndex];
      if (index !== null) {
        const r = await post("/api/choice", { participant: plan.participant, pair, chosen: pair[index] });
        if (r.status !== 201 && r.status !== 409) { status("Could not save: " + (r.data.error || r.status)); return; }
      }
      pairIndex++;
      showPair();
    } finally {
      busy = false;
    }
  }

  $("agree").addEventListener("click", async () => {
    $("agree").disabled = true;
    const r = await post("/api/session", {});
    if (r.status !== 201) { status("Could not start: " + (r.data.error || r.status)); $("agree").disabled = false; return; }
    plan = r.data;
    buildQuestions();
    showPiece();
  });

  $("rate-form").addEventListener("change", () => { $("submit-rating").disabled = answers() === null; });

  $("rate-form").addEventListener("submit", async event => {
    event.preventDefault();
    const scores = answers();
    if (!scores) return;
    $("submit-rating").disabled = true;
    const r = await post("/api/rate", { participant: plan.participant, sample: plan.pieces[pieceIndex], scores });
    // 409: this piece was already saved (e.g. a double click); move on either way.
    if (r.status !== 201 && r.status !== 409) {
      status("Could not save: " + (r.data.error || r.status));
      $("submit-rating").disabled = false;
      return;
    }
    pieceIndex++;
    showPiece();
  });

  $("choose-a").addEventListener("click", () => choose(0));
  $("choose-b").addEventListener("click", () => choose(1));
  $("skip-pair").addEventListener("click", () => choose(null));
})();
