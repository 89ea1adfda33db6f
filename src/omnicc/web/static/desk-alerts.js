// New-offer alerts: a desktop notification (permission is asked on a click, as browsers
// require) and a short two-tone chime synthesised with WebAudio, so no sound file is fetched.

let audio = null;

// Browsers only let a page make sound after the user has interacted with it: the first
// click or key press creates (or resumes) the audio context.
export function unlockSound() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  if (!audio) audio = new Context();
  if (audio.state === "suspended") audio.resume();
}

export function chime() {
  if (!audio || audio.state !== "running") return;
  const start = audio.currentTime;
  for (const [offset, frequency] of [[0, 880], [0.18, 1320]]) {
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.type = "sine";
    oscillator.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.16);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start(start + offset);
    oscillator.stop(start + offset + 0.18);
  }
}

export function notificationsWanted() {
  return "Notification" in window && Notification.permission === "default";
}

export async function askNotifications() {
  if (!notificationsWanted()) return "Notification" in window ? Notification.permission : "denied";
  return Notification.requestPermission();
}

export function notify(title, body, tag) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (document.visibilityState === "visible" && document.hasFocus()) return;
  const note = new Notification(title, { body, tag, requireInteraction: true });
  note.addEventListener("click", () => { window.focus(); note.close(); });
}
