// The page: each chosen or dropped photo goes to the server (POST api/photos), one at a time, and
// comes back as its faces, each with every model's P(class), verdict and heat map. No library, and
// nothing from the network: the server's Content-Security-Policy allows this server only.
"use strict";

const results = document.getElementById("results");
const drop = document.getElementById("drop");
const input = document.getElementById("files");
const waiting = [];
let about = null;
let sending = false;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadModels() {
  const response = await fetch("api/models");
  about = await response.json();
  const [first, second] = about.classes;
  const names = about.models.map((model) => model.name).join(", ");
  document.getElementById("about").textContent =
    `${about.models.length} model${about.models.length === 1 ? "" : "s"}: ${names}. ` +
    `Verdict ${second} when P(${second}) \u2265 ${about.threshold}, else ${first}.`;
}

function card(file) {
  const root = element("article", "card");
  root.dataset.file = file.name;
  root.dataset.state = "waiting";
  const figure = element("div", "photo");
  const img = element("img");
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  img.onerror = () => img.remove();           // not an image the browser shows: the message says why
  figure.append(img);
  const details = element("div", "details");
  details.append(element("h2", "", file.name), element("p", "message", "waiting\u2026"));
  root.append(figure, details);
  results.append(root);
  return root;
}

function say(root, state, text) {
  root.dataset.state = state;
  root.querySelector(".message").textContent = text;
  if (state === "error") root.querySelector(".photo").replaceChildren();   // never show what was refused
}

function probabilityCell(probability) {
  const cell = element("td", "probability", probability.toFixed(3));
  const bar = element("span", "bar");
  const fill = element("i");
  fill.style.width = `${Math.round(probability * 100)}%`;
  bar.append(fill);
  cell.append(bar);
  return cell;
}

function show(root, answer) {
  const figure = root.querySelector(".photo");
  answer.faces.forEach((face, index) => {
    const [left, top, width, height] = face.box;
    const box = element("div", "box");
    box.style.left = `${(100 * left) / answer.width}%`;
    box.style.top = `${(100 * top) / answer.height}%`;
    box.style.width = `${(100 * width) / answer.width}%`;
    box.style.height = `${(100 * height) / answer.height}%`;
    box.append(element("span", "", String(index + 1)));
    figure.append(box);
  });
  if (answer.faces.length === 0) {
    say(root, "no-face", "No face found in this photo: nothing to classify.");
    return;
  }
  const count = answer.faces.length;
  say(root, "done", `${count} face${count === 1 ? "" : "s"} found.`);
  const table = element("table", "faces");
  const head = element("tr");
  for (const title of ["face", "model", `P(${about.classes[1]})`, "verdict", "where it looked"]) {
    head.append(element("th", "", title));
  }
  table.append(head);
  answer.faces.forEach((face, index) => {
    face.models.forEach((result, row) => {
      const line = element("tr", "result");
      if (row === 0) {
        const number = element("td", "face", `${index + 1}`);
        number.rowSpan = face.models.length;
        line.append(number);
      }
      const mapCell = element("td");
      if (result.heatmap) {
        const map = element("img", "heatmap");
        map.alt = `where ${result.model} looked in face ${index + 1}`;
        map.src = result.heatmap;
        mapCell.append(map);
      } else {
        mapCell.textContent = "none (an exported model)";
      }
      line.append(element("td", "model", result.model), probabilityCell(result.probability),
                  element("td", "verdict", result.verdict), mapCell);
      table.append(line);
    });
  });
  root.querySelector(".details").append(table);
}

async function analyse(file, root) {
  say(root, "busy", "finding faces and asking the models\u2026");
  const form = new FormData();
  form.append("photo", file, file.name);
  let response;
  try {
    response = await fetch("api/photos", { method: "POST", body: form });
  } catch (problem) {
    say(root, "error", `${file.name}: the server could not be reached (${problem.message})`);
    return;
  }
  const answer = await response.json().catch(() => ({ error: `${file.name}: the server answered ${response.status}` }));
  if (!response.ok) {
    say(root, "error", answer.error);
    return;
  }
  show(root, answer);
}

async function sendAll() {
  if (sending) return;
  sending = true;
  await ready.catch(() => {});
  while (waiting.length) {
    const [file, root] = waiting.shift();
    await analyse(file, root);
  }
  sending = false;
}

function add(files) {
  for (const file of files) waiting.push([file, card(file)]);
  sendAll();
}

input.addEventListener("change", () => { add(input.files); input.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  add(event.dataTransfer.files);
});
const ready = loadModels();
ready.catch((problem) => {
  document.getElementById("about").textContent = `The models could not be listed: ${problem.message}`;
});
