// How the wallboard writes its figures (definitions in METRICS.md): durations as mm:ss,
// shares as whole percent, presence and phase names in words. Pure functions, no DOM.

export const SL_TARGET = 0.8;          // the "80/20" convention: 80 % within the threshold
export const SL_WARN_BAND = 0.1;       // below target by more than this: "far below"

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const total = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, "0");
  if (hours) return `${hours}:${String(minutes).padStart(2, "0")}:${secs}`;
  return `${String(minutes).padStart(2, "0")}:${secs}`;
}

export function percent(share) {
  if (share === null || share === undefined) return "–";
  return `${Math.round(share * 100)} %`;
}

const PRESENCE = { available: "Available", busy: "Busy", wrap_up: "Wrap-up", break: "Break",
                   offline: "Offline", no_answer: "No answer" };

export function presenceLabel(name) {
  if (PRESENCE[name]) return PRESENCE[name];
  const words = String(name).replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// The badge class of a presence: the shared stylesheet colours the known ones.
export function presenceClass(name) {
  return name in PRESENCE ? name : "custom";
}

const PHASES = { waiting: "Waiting", offered: "Offered", assigned: "In progress",
                 wrapping: "Wrap-up", ended: "Ended" };

export function phaseLabel(name) {
  return PHASES[name] || presenceLabel(name);
}

// The service level's state, in words as well as a colour class.
export function serviceLevelState(share) {
  if (share === null || share === undefined) return { kind: "none", text: "No contacts yet" };
  if (share >= SL_TARGET) return { kind: "ok", text: "On target" };
  if (share >= SL_TARGET - SL_WARN_BAND) return { kind: "warn", text: "Below target" };
  return { kind: "bad", text: "Far below target" };
}

export function channelsInProgress(inProgress) {
  const parts = Object.entries(inProgress || {}).filter(([, n]) => n > 0)
    .map(([channel, n]) => `${n} ${channel}`);
  return parts.length ? parts.join(", ") : "–";
}

export function skillsText(skills) {
  const parts = Object.entries(skills || {}).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, level]) => `${name} ${level}`);
  return parts.length ? parts.join(", ") : "none";
}

// A stable, attribute-safe token for data-testid values built from names.
export function testId(name) {
  return String(name).trim().replace(/\s+/g, "-");
}
