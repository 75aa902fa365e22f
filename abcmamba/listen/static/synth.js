// A small self-contained MIDI player: parses a Standard MIDI File and plays it
// with WebAudio oscillators, so the test needs no plugin, soundfont or network.
(function (global) {
  "use strict";

  function readUint(bytes, pos, n) {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + bytes[pos + i];
    return v;
  }

  function readVLQ(bytes, pos) {
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const b = bytes[pos++];
      v = v * 128 + (b & 0x7f);
      if (!(b & 0x80)) return [v, pos];
    }
    throw new Error("bad variable-length number");
  }

  function chunkId(bytes, pos) {
    return String.fromCharCode(bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]);
  }

  // Events of one track as {tick, type, ...}; running status and sysex handled.
  function parseTrack(bytes, start, end) {
    const events = [];
    let pos = start, tick = 0, status = 0;
    while (pos < end) {
      let delta;
      [delta, pos] = readVLQ(bytes, pos);
      if (pos >= end) break;  // truncated track
      tick += delta;
      const b = bytes[pos];
      if (b === 0xff) {
        const type = bytes[pos + 1];
        let len;
        [len, pos] = readVLQ(bytes, pos + 2);
        if (type === 0x51 && len === 3) events.push({ tick, type: "tempo", usPerQuarter: readUint(bytes, pos, 3) });
        pos += len;
        if (type === 0x2f) break;
      } else if (b === 0xf0 || b === 0xf7) {
        let len;
        [len, pos] = readVLQ(bytes, pos + 1);
        pos += len;
      } else {
        // Running status is kept across meta events: some writers rely on it.
        if (b & 0x80) { status = b; pos++; } else if (!status) throw new Error("data byte without status");
        const kind = status & 0xf0, channel = status & 0x0f;
        const d1 = bytes[pos++];
        const d2 = (kind === 0xc0 || kind === 0xd0) ? 0 : bytes[pos++];
        if (kind === 0x90 && d2 > 0) events.push({ tick, type: "on", channel, pitch: d1, velocity: d2 });
        else if (kind === 0x80 || kind === 0x90) events.push({ tick, type: "off", channel, pitch: d1 });
        else if (kind === 0xc0) events.push({ tick, type: "program", channel, program: d1 });
      }
    }
    return { events, endTick: tick };
  }

  // {notes: [{time, duration, pitch, velocity, channel, program}], duration} in seconds.
  function parseMidi(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes.length < 14 || chunkId(bytes, 0) !== "MThd") throw new Error("not a MIDI file");
    const headerLen = readUint(bytes, 4, 4);
    const division = readUint(bytes, 12, 2);
    let pos = 8 + headerLen;
    const tracks = [];
    while (pos + 8 <= bytes.length) {
      const id = chunkId(bytes, pos), len = readUint(bytes, pos + 4, 4);
      const end = Math.min(pos + 8 + len, bytes.length);
      if (id === "MTrk") tracks.push(parseTrack(bytes, pos + 8, end));
      pos = end;
    }

    // Tempo map shared by all tracks (format 1 keeps it in the first track).
    const tempos = [];
    tracks.forEach(t => t.events.forEach(e => { if (e.type === "tempo") tempos.push(e); }));
    tempos.sort((a, b) => a.tick - b.tick);
    let toSeconds;
    if (division & 0x8000) {
      const fps = 256 - (division >> 8), perFrame = division & 0xff;
      toSeconds = tick => tick / (fps * perFrame);
    } else {
      const segments = [{ tick: 0, seconds: 0, usPerQuarter: 500000 }];
      for (const t of tempos) {
        const last = segments[segments.length - 1];
        const seconds = last.seconds + (t.tick - last.tick) * last.usPerQuarter / 1e6 / division;
        segments.push({ tick: t.tick, seconds, usPerQuarter: t.usPerQuarter });
      }
      toSeconds = tick => {
        let s = segments[0];
        for (const seg of segments) { if (seg.tick <= tick) s = seg; else break; }
        return s.seconds + (tick - s.tick) * s.usPerQuarter / 1e6 / division;
      };
    }

    const notes = [];
    for (const track of tracks) {
      const open = new Map();  // channel*128+pitch -> started notes, first in first out
      const program = new Array(16).fill(0);
      const events = track.events.slice().sort((a, b) => a.tick - b.tick);
      const close = (key, tick) => {
        const started = open.get(key);
        if (!started || !started.length) return;
        const n = started.shift();
        n.endTick = tick;
        notes.push(n);
      };
      for (const e of events) {
        if (e.type === "program") program[e.channel] = e.program;
        else if (e.type === "on") {
          const key = e.channel * 128 + e.pitch;
          if (!open.has(key)) open.set(key, []);
          open.get(key).push({ tick: e.tick, pitch: e.pitch, velocity: e.velocity,
                               channel: e.channel, program: program[e.channel] });
        } else if (e.type === "off") close(e.channel * 128 + e.pitch, e.tick);
      }
      for (const [key, started] of open) while (started.length) close(key, track.endTick);
    }
    let duration = 0;
    const out = notes.map(n => {
      const time = toSeconds(n.tick), end = toSeconds(n.endTick);
      duration = Math.max(duration, end);
      return { time, duration: Math.max(0, end - time), pitch: n.pitch, velocity: n.velocity,
               channel: n.channel, program: n.program };
    });
    out.sort((a, b) => a.time - b.time || a.pitch - b.pitch);
    return { notes: out, duration };
  }

  let sharedContext = null;
  function audioContext() {
    if (!sharedContext) sharedContext = new (global.AudioContext || global.webkitAudioContext)();
    return sharedContext;
  }

  // Plays parsed notes; schedules a short window ahead so long pieces start at once.
  class Player {
    constructor(song) {
      this.song = song;
      this.playing = false;
      this.onstate = () => {};
      this.onprogress = () => {};
    }

    play() {
      if (this.playing) return;
      const ctx = audioContext();
      if (ctx.state === "suspended") ctx.resume();
      this.out = ctx.createGain();
      this.out.gain.value = 0.6;
      const comp = ctx.createDynamicsCompressor();
      this.out.connect(comp);
      comp.connect(ctx.destination);
      this.start = ctx.currentTime + 0.1;
      this.next = 0;
      this.playing = true;
      this.timer = setInterval(() => this.tick(), 50);
      this.tick();
      this.onstate(true);
    }

    stop() {
      if (!this.playing) return;
      clearInterval(this.timer);
      this.playing = false;
      // Dropping the output node silences every note already scheduled.
      this.out.disconnect();
      this.onstate(false);
      this.onprogress(0, this.song.duration);
    }

    tick() {
      const ctx = audioContext(), now = ctx.currentTime - this.start;
      const notes = this.song.notes;
      while (this.next < notes.length && notes[this.next].time < now + 0.5) {
        scheduleNote(ctx, this.out, this.start, notes[this.next++]);
      }
      this.onprogress(Math.max(0, now), this.song.duration);
      if (now > this.song.duration + 0.3) this.stop();
    }
  }

  // One note on `dest`: two partials under an attack-decay-sustain-release envelope.
  function scheduleNote(ctx, dest, start, n) {
    const t0 = start + n.time, t1 = t0 + Math.max(n.duration, 0.05);
    const peak = 0.25 * (n.velocity / 127);
    const env = ctx.createGain();
    env.gain.setValueAtTime(0, t0);
    env.connect(dest);
    if (n.channel === 9) {  // percussion: a short noise burst
      const src = ctx.createBufferSource();
      src.buffer = noiseBuffer(ctx);
      env.gain.linearRampToValueAtTime(peak, t0 + 0.002);
      env.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.12);
      src.connect(env);
      src.start(t0);
      src.stop(t0 + 0.15);
      return;
    }
    const freq = 440 * Math.pow(2, (n.pitch - 69) / 12);
    // Attack, decay to a sustain level, release after the note ends.
    // Short notes reach the sustain level sooner, so the events stay in time order.
    const decayEnd = Math.min(t0 + 0.26, t1);
    env.gain.linearRampToValueAtTime(peak, t0 + 0.01);
    env.gain.exponentialRampToValueAtTime(peak * 0.5, decayEnd);
    if (t1 > decayEnd) env.gain.setValueAtTime(peak * 0.5, t1);
    env.gain.linearRampToValueAtTime(0, t1 + 0.08);
    const partials = [[1, "triangle", 1], [2, "sine", 0.25]];
    for (const [mult, type, level] of partials) {
      const osc = ctx.createOscillator(), g = ctx.createGain();
      osc.type = type;
      osc.frequency.value = freq * mult;
      g.gain.value = level;
      osc.connect(g);
      g.connect(env);
      osc.start(t0);
      osc.stop(t1 + 0.1);
    }
  }

  // Renders a song to an AudioBuffer without a sound card (used by the tests).
  function renderOffline(song, sampleRate) {
    const rate = sampleRate || 22050;
    const ctx = new OfflineAudioContext(1, Math.ceil((song.duration + 0.5) * rate), rate);
    const out = ctx.createGain();
    out.gain.value = 0.6;
    out.connect(ctx.destination);
    for (const n of song.notes) scheduleNote(ctx, out, 0, n);
    return ctx.startRendering();
  }

  const noise = new WeakMap();  // one noise buffer per audio context

  function noiseBuffer(ctx) {
    if (!noise.has(ctx)) {
      const buffer = ctx.createBuffer(1, Math.ceil(ctx.sampleRate * 0.2), ctx.sampleRate);
      const data = buffer.getChannelData(0);
      for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
      noise.set(ctx, buffer);
    }
    return noise.get(ctx);
  }

  global.ListenSynth = { parseMidi, Player, renderOffline };
})(window);
