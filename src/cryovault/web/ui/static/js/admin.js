// Administration pages: the two ways of adding a user, and picking a directory suggestion.
const $ = (sel, root = document) => root.querySelector(sel);

document.addEventListener("change", (event) => {
  if (event.target.name !== "add-mode") return;
  const mode = event.target.value;
  document.querySelectorAll("#add-user-dialog form[data-mode]").forEach((form) => {
    form.hidden = form.dataset.mode !== mode;
  });
  const first = $(`#add-user-dialog form[data-mode="${mode}"] input:not([type=hidden])`);
  if (first) first.focus();
});

document.addEventListener("click", (event) => {
  const choice = event.target.closest(".suggestion");
  if (!choice || choice.disabled) return;
  $("#directory-username").value = choice.dataset.username;
  const label = $("#directory-choice");
  label.textContent = choice.dataset.label;
  label.hidden = false;
  document.querySelectorAll(".suggestion").forEach((b) => b.classList.toggle("chosen", b === choice));
  $("#add-directory-user").disabled = false;
});
