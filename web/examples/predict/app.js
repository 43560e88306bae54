// An app that embeds a fedge model: a form from the model's inputs, a prediction, and "help improve".
import { FedgeClient } from "/sdk/fedge.js";
const $ = (id) => document.getElementById(id);
const say = (error) => ($("log").textContent = `${error.code}: ${error.message}`);
const client = await FedgeClient.connect(location.origin, { enrol: true });
const [input] = client.model.inputs;
const [output] = client.model.outputs;
$("title").textContent = client.model.name;
for (const name of input.features) {
  const label = document.createElement("label");
  label.append(name, Object.assign(document.createElement("input"), { type: "number", name }));
  $("form").append(label);
}
const row = () => [...$("form").elements].map((field) => Number(field.value));
$("predict").addEventListener("click", () =>
  client.predict({ [input.name]: [row()] }).then((got) => {
    const [values] = got[output.name];
    const best = values.indexOf(Math.max(...values));
    $("answer").textContent = output.labels ? output.labels[best] : values[0].toFixed(4);
  }, say),
);
$("improve").addEventListener("click", async () => {
  try {
    await client.addExample({ [input.name]: row() }, Number($("label").value));
    const outcome = await client.joinRound({ onProgress: (step, text) => ($("log").textContent = text) });
    $("log").textContent = outcome.status === "contributed" ? `round ${outcome.round_id}: accepted` : `no task: ${outcome.reason}`;
  } catch (error) {
    say(error);
  }
});
client.on("release", ({ release }) => ($("log").textContent = `now release ${release.version}`));
window.fedgeExample = { client, FedgeClient };
