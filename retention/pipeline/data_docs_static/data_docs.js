/* Offline stand-in for the jQuery, Bootstrap and bootstrap-table calls in Great Expectations' Data Docs
   (retention/pipeline/data_docs.py): renders the index's table of validations from the data inlined in the
   page, sorted as asked, each row a link; shows and hides elements; any other call does nothing. */
(function () {
  "use strict";
  var handlers = new WeakMap();

  function ready(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  function select(target) {
    if (typeof target === "function") { ready(target); return wrap([]); }
    if (target === document || target === window || target instanceof Element) return wrap([target]);
    if (typeof target !== "string") return wrap([]);
    try { return wrap(Array.prototype.slice.call(document.querySelectorAll(target))); }
    catch (e) { return wrap([]); }  // a selector jQuery accepts and the DOM does not
  }

  function wrap(nodes) {
    var self;
    var api = {
      length: nodes.length,
      ready: function (fn) { ready(fn); return self; },
      each: function (fn) { nodes.forEach(function (n, i) { fn.call(n, i, n); }); return self; },
      parent: function () { return wrap(nodes.map(function (n) { return n.parentElement; }).filter(Boolean)); },
      fadeIn: function () { nodes.forEach(function (n) { n.style.display = ""; }); return self; },
      fadeOut: function () { nodes.forEach(function (n) { n.style.display = "none"; }); return self; },
      addClass: function (c) { nodes.forEach(function (n) { n.classList.add(c); }); return self; },
      removeClass: function (c) { nodes.forEach(function (n) { n.classList.remove(c); }); return self; },
      data: function (key) { return nodes.length ? nodes[0].getAttribute("data-" + key) : undefined; },
      on: function (event, fn) {
        nodes.forEach(function (n) {
          handlers.set(n, (handlers.get(n) || []).concat([[event, fn]]));
          if (event.indexOf(".") < 0) n.addEventListener(event, fn);
        });
        return self;
      },
      bootstrapTable: function (options) {
        if (options && typeof options === "object") nodes.forEach(function (n) { renderTable(n, options); });
        return self;
      }
    };
    self = new Proxy(api, {
      get: function (t, key) {
        if (key in t) return t[key];
        if (typeof key === "string" && /^\d+$/.test(key)) return nodes[+key];
        return function () { return self; };  // modal, tooltip, collapse, ...: nothing to do offline
      }
    });
    return self;
  }

  function named(fn) { return typeof fn === "string" ? window[fn] : fn; }

  function renderTable(table, options) {
    var columns = options.columns || [];
    var rows = (options.data || []).slice();
    var sortBy = columns.filter(function (c) { return c.field === options.sortName; })[0];
    if (sortBy) {
      var key = sortBy.sortName || sortBy.field, sign = options.sortOrder === "desc" ? -1 : 1;
      rows.sort(function (a, b) { return (a[key] > b[key] ? 1 : a[key] < b[key] ? -1 : 0) * sign; });
    }
    var rowStyle = named(options.rowStyle), rowAttributes = named(options.rowAttributes);
    table.innerHTML = "";
    table.classList.add("table", "offline-table");
    var head = table.createTHead().insertRow();
    columns.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c.title;
      head.appendChild(th);
    });
    var body = table.createTBody();
    rows.forEach(function (row, i) {
      var tr = body.insertRow();
      var attributes = rowAttributes ? rowAttributes(row, i) : {};
      Object.keys(attributes).forEach(function (a) { tr.setAttribute(a, attributes[a]); });
      var style = rowStyle ? rowStyle(row, i) : {};
      Object.assign(tr.style, style.css || {});
      columns.forEach(function (c) {
        var td = tr.insertCell();
        td.innerHTML = row[c.field] == null ? "" : row[c.field];  // GX's own cell markup, as bootstrap-table shows it
        if (c.align) td.style.textAlign = c.align;
      });
      tr.addEventListener("click", function (event) {
        (handlers.get(table) || []).forEach(function (h) {
          if (h[0] === "click-row.bs.table") h[1](event, row, wrap([tr]));
        });
      });
    });
  }

  window.jQuery = window.$ = select;
})();
