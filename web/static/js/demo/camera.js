// The camera as an image input: "Use camera" asks for the camera
// (getUserMedia, video only) and shows it live; "Take snapshot" hands the
// current frame to the image widget, which resizes and scales it exactly as
// a chosen file (the whole frame to the input's height x width); "Stop
// camera" releases it. Nothing leaves the page: the frame becomes the
// model's input like any other image.
//
// A page without a camera, or whose user says no, says so next to the
// button; the file picker and the drawing pad still work.

const button = (label) => {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "button";
  el.textContent = label;
  return el;
};

/** A camera box for `input`; `onFrame(video)` is called with the live video at each snapshot. */
export function cameraBox(input, onFrame) {
  const box = document.createElement("div");
  box.className = "input-camera";
  const start = button("Use camera");
  const snap = button("Take snapshot");
  const stop = button("Stop camera");
  const note = document.createElement("span");
  note.className = "muted small";
  note.setAttribute("role", "status");
  const video = document.createElement("video");
  video.className = "input-video";
  video.muted = true;
  video.playsInline = true;
  video.setAttribute("aria-label", `The camera, for ${input.name}`);
  video.hidden = snap.hidden = stop.hidden = true;
  box.append(start, snap, stop, note, video);
  let stream = null;

  const release = () => {
    for (const track of stream?.getTracks() ?? []) track.stop();
    stream = null;
    video.srcObject = null;
    video.hidden = snap.hidden = stop.hidden = true;
    start.hidden = false;
  };
  start.addEventListener("click", async () => {
    if (!navigator.mediaDevices?.getUserMedia) {
      note.textContent = "no camera here (it needs a secure page: https or localhost)";
      return;
    }
    note.textContent = "asking for the camera…";
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
      video.srcObject = stream;
      await video.play();
    } catch (error) {
      release();
      note.textContent = `the camera could not start: ${error.name === "NotAllowedError" ? "permission refused" : error.message || error.name}`;
      return;
    }
    note.textContent = "";
    video.hidden = snap.hidden = stop.hidden = false;
    start.hidden = true;
  });
  snap.addEventListener("click", () => {
    if (!stream || video.readyState < 2) {
      note.textContent = "the camera has no picture yet";
      return;
    }
    note.textContent = `snapshot taken (${video.videoWidth}×${video.videoHeight} to ${input.width}×${input.height})`;
    onFrame(video);
  });
  stop.addEventListener("click", release);
  return box;
}
