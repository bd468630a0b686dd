<?php
require __DIR__ . '/inc/common.php';

$user = require_login();
$title = 'My notes';
require __DIR__ . '/inc/header.php';
?>
<form id="add"><input name="text" aria-label="a new note"> <button type="submit">Add</button></form>
<ul id="notes"></ul>
<p><button type="button" id="reload">Reload</button> <span id="status"></span></p>
<script>
  // The page's own code: it reads its JSON and shows it.
  var list = document.getElementById("notes");
  function show(data) {
    list.textContent = "";
    data.notes.forEach(function (n) {
      var li = document.createElement("li");
      li.textContent = n.text;
      list.appendChild(li);
    });
    document.getElementById("status").textContent = data.notes.length + " notes of " + data.user;
  }
  function load() {
    return fetch("notes.php", { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(show);
  }
  document.getElementById("reload").addEventListener("click", load);
  document.getElementById("add").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = e.target.elements.text.value;
    fetch("notes.php", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: text }) })
      .then(function (r) { return r.json(); })
      .then(function () { e.target.reset(); return load(); });
  });
  load();
</script>
<?php require __DIR__ . '/inc/footer.php'; ?>
