// The shop's front end: lists orders, places one, shows the API's health.
async function refresh() {
  const orders = await (await fetch("/api/orders")).json();
  document.getElementById("orders").replaceChildren(
    ...orders.orders.map((o) => Object.assign(document.createElement("li"), { textContent: o.item })),
  );
  const health = await (await fetch("/api/health")).json();
  document.getElementById("health").textContent = `API ${health.release}: ${health.status}`;
}
document.getElementById("order").addEventListener("submit", async (event) => {
  event.preventDefault();
  const item = new FormData(event.target).get("item");
  await fetch("/api/orders", { method: "POST", body: JSON.stringify({ item }) });
  event.target.reset();
  setTimeout(refresh, 500);
});
refresh();
