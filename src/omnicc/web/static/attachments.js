// Files in chats, for the widget and the agent's and supervisor's pages (plain ES module).
//
// uploadAttachment(url, file, headers) sends one file and resolves to the message it became;
// attachmentLink(attachment, { headers }) draws a message's file: a thumbnail for pictures,
// a download link for the rest. Staff pages are on the server's origin and load files with
// their session cookie; the widget, on another origin, passes { "X-Visitor-Token": token } and
// the file is fetched with that header, since a URL never carries a credential.
// Every name is set with textContent: a file name is never markup.

export const RULES_PATH = "/api/chat/attachments/rules";

export class UploadError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `The file could not be sent (HTTP ${status}).`);
    this.status = status;
    this.problem = problem;
  }
}

// { max_bytes, content_types, accept }: put `accept` on the file input, check sizes first.
export async function uploadRules(server = "") {
  const response = await fetch(`${server}${RULES_PATH}`, { credentials: "omit" });
  if (!response.ok) throw new UploadError(response.status, null);
  return response.json();
}

export function formatBytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(size < 10240 ? 1 : 0)} KB`;
  return `${(size / 1048576).toFixed(1)} MB`;
}

// Refuses early what the server would refuse anyway (a clearer message, no wasted upload).
export function checkFile(file, rules) {
  if (rules && file.size > rules.max_bytes) {
    throw new UploadError(413, { detail: `"${file.name}" is ${formatBytes(file.size)}; ` +
                                         `the limit is ${formatBytes(rules.max_bytes)}.` });
  }
  if (file.size === 0) throw new UploadError(422, { detail: `"${file.name}" is empty.` });
}

// headers: { "X-Visitor-Token": token } for the widget, { "X-CSRF-Token": csrf } for staff.
export async function uploadAttachment(url, file, headers = {}, rules = null) {
  checkFile(file, rules);
  const body = new FormData();
  body.append("file", file, file.name);
  let response;
  try {
    response = await fetch(url, { method: "POST", body, credentials: "same-origin",
                                  headers: { Accept: "application/json", ...headers } });
  } catch {
    throw new UploadError(0, { detail: `"${file.name}" could not be sent: the connection failed.` });
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : null;
  if (!response.ok) throw new UploadError(response.status, data);
  return data;
}

function fetchBlob(attachment, server, headers) {
  return fetch(`${server}${attachment.url}`, { headers, credentials: "same-origin" })
    .then((response) => {
      if (!response.ok) throw new UploadError(response.status, null);
      return response.blob();
    });
}

// A <figure> (picture) or <a> (other files) for one attachment of a message view.
export function attachmentLink(attachment, { headers = null, server = "" } = {}) {
  const isImage = attachment.content_type.startsWith("image/");
  const label = `${attachment.filename} (${formatBytes(attachment.size_bytes)})`;
  const link = document.createElement("a");
  link.className = "attachment-link";
  link.textContent = label;
  link.setAttribute("aria-label", `Download ${label}`);
  link.rel = "noopener";
  link.download = attachment.filename;
  if (!headers) {
    link.href = `${server}${attachment.url}`;
  } else {
    // A credential in a header cannot ride on a plain link: fetch, then save the bytes.
    link.href = "#";
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      try {
        const url = URL.createObjectURL(await fetchBlob(attachment, server, headers));
        const save = document.createElement("a");
        save.href = url;
        save.download = attachment.filename;
        save.click();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      } catch {
        link.textContent = `${label}: not available`;
        link.setAttribute("aria-disabled", "true");
      }
    });
  }
  if (!isImage) return link;

  const figure = document.createElement("figure");
  figure.className = "attachment-image";
  const image = document.createElement("img");
  image.alt = attachment.filename;
  image.loading = "lazy";
  image.decoding = "async";
  const caption = document.createElement("figcaption");
  caption.append(link);
  figure.append(image, caption);
  if (!headers) {
    image.src = `${server}${attachment.url}`;
  } else {
    fetchBlob(attachment, server, headers)
      .then((blob) => { image.src = URL.createObjectURL(blob); })
      .catch(() => { image.remove(); });
  }
  return figure;
}
