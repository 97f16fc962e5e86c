// The gallery: an index of unit cards (sorted, filtered, paginated) and a detail view per unit (#unit=ID).
// Plain script, no dependencies: it runs from file:// with no network.
(function () {
  "use strict";
  var data = window.DGNAM_PROBE;
  var PAGE = 60; // cards per page: a 512-unit layer opens as fast as a 10-unit one
  var state = { sort: "unit", filter: "", page: 0 };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function fmt(x, digits) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(digits === undefined ? 2 : digits); }

  // A real image with its spatial-maximum box (fractions of the image) drawn over it.
  function thumb(item, alt) {
    var children = [el("img", { "class": "px", src: item.file, alt: alt })];
    if (item.box) {
      var b = el("div", { "class": "box" });
      b.style.top = (100 * item.box[0]) + "%"; b.style.left = (100 * item.box[1]) + "%";
      b.style.height = (100 * item.box[2]) + "%"; b.style.width = (100 * item.box[3]) + "%";
      children.push(b);
    }
    return el("div", { "class": "thumb" }, children);
  }

  function matches(u, filter) {
    if (!filter) return true;
    var range = /^(\d+)\s*-\s*(\d+)$/.exec(filter);
    if (range) return u.unit >= +range[1] && u.unit <= +range[2];
    if (/^\d+$/.test(filter)) return String(u.unit) === filter;
    return String(u.label).toLowerCase().indexOf(filter.toLowerCase()) >= 0;
  }

  function ordered() {
    var units = data.units.filter(function (u) { return matches(u, state.filter.trim()); });
    var key = {
      "unit": function (a, b) { return a.unit - b.unit; },
      // Units without a ratio (they never fire on the data) go last either way.
      "ratio-desc": function (a, b) { return (b.ratio === null ? -Infinity : b.ratio) - (a.ratio === null ? -Infinity : a.ratio) || a.unit - b.unit; },
      "ratio-asc": function (a, b) { return (a.ratio === null ? Infinity : a.ratio) - (b.ratio === null ? Infinity : b.ratio) || a.unit - b.unit; },
      "max-desc": function (a, b) { return b.max - a.max || a.unit - b.unit; }
    }[state.sort];
    return units.slice().sort(key);
  }

  function card(u) {
    var synth = u.synthesized[0], real = u.top[0];
    var pair = el("div", { "class": "pair" }, [
      synth ? el("figure", {}, [el("img", { "class": "px", src: synth.file, alt: "synthesised " + u.label }),
                                el("figcaption", { text: "synthesised" })]) : null,
      real ? el("figure", {}, [thumb(real, "top image " + u.label), el("figcaption", { text: "top real" })]) : null
    ]);
    var a = el("a", { "class": "card", href: "#unit=" + u.unit, "data-unit": u.unit }, [
      el("h2", { text: u.label }), pair,
      el("div", { "class": "stats", text: "ratio " + fmt(u.ratio) + " · max " + fmt(u.max) })
    ]);
    return a;
  }

  function renderIndex() {
    var units = ordered();
    var pages = Math.max(1, Math.ceil(units.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var cards = $("cards");
    cards.textContent = "";
    units.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (u) { cards.appendChild(card(u)); });
    $("count").textContent = units.length + " of " + data.units.length + " units";
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function strip(u) {
    var lo = u.percentiles[0], hi = u.percentiles[u.percentiles.length - 1];
    var best = u.synthesized.length ? u.synthesized[0].activation : null;
    if (best !== null) hi = Math.max(hi, best);
    var span = hi - lo || 1;
    var node = el("div", { "class": "strip", title: "percentiles of the unit's activation over the data" });
    var labelled = [0, 50, 90, 99, 100]; // the others are ticks only: labels of close values would overlap
    u.percentiles.forEach(function (v, i) {
      var level = data.percentile_levels[i];
      var t = el("div", { "class": "tick" }, labelled.indexOf(level) >= 0 ? [el("span", { text: "p" + level })] : []);
      t.style.left = (100 * (v - lo) / span) + "%";
      t.title = "p" + level + " = " + fmt(v, 3);
      node.appendChild(t);
    });
    if (best !== null) {
      var s = el("div", { "class": "synth", title: "best synthesised image: " + fmt(best, 3) });
      s.style.left = (100 * (best - lo) / span) + "%";
      node.appendChild(s);
    }
    return node;
  }

  function figureRow(items, caption, real) {
    if (!items.length) return el("p", { "class": "empty", text: "none" });
    return el("div", { "class": "row" }, items.map(function (it, i) {
      return el("figure", {}, [real ? thumb(it, "real " + i) : el("img", { "class": "px", src: it.file, alt: "image " + i }),
                               el("figcaption", { text: caption(it) })]);
    }));
  }

  function renderDetail(id) {
    var u = data.units.filter(function (x) { return x.unit === id; })[0];
    var view = $("detail-view");
    view.textContent = "";
    if (!u) { view.appendChild(el("p", { text: "No unit " + id + " in this probe." })); return; }
    var synthCaption = function (s) { return "act " + fmt(s.activation) + " · " + fmt(s.relative) + " of real max · seed " + s.seed; };
    view.appendChild(el("p", {}, [el("a", { href: "#", text: "← all units" })]));
    view.appendChild(el("h2", { text: u.label + " (layer " + data.layer + ", unit " + u.unit + ")" }));
    view.appendChild(el("p", { text: "real max " + fmt(u.max, 3) + " · mean " + fmt(u.mean, 3) + " · ratio " + fmt(u.ratio) }));
    view.appendChild(strip(u));
    view.appendChild(el("p", { "class": "percentiles", text: "percentiles over the data: " + u.percentiles.map(function (v, i) {
      return "p" + data.percentile_levels[i] + " " + fmt(v, 2);
    }).join(" · ") + (u.synthesized.length ? " · best synthesised " + fmt(u.synthesized[0].activation, 2) : "") }));
    view.appendChild(el("h3", { text: "Synthesised (" + data.settings.param + (data.settings.init === "data" ?
      ", restart r seeded with real image r below, changed through the prior" : ", from noise") + ")" }));
    view.appendChild(figureRow(u.synthesized, synthCaption, false));
    if (u.baseline && u.baseline.length) {
      view.appendChild(el("h3", { text: "Baseline (" + data.settings.baseline + ")" }));
      view.appendChild(figureRow(u.baseline, synthCaption, false));
    }
    view.appendChild(el("h3", { text: "Top " + u.top.length + " real images" + (data.reading === "max" ? " (box: where the channel peaks)" : "") }));
    view.appendChild(figureRow(u.top, function (t) { return fmt(t.activation, 3) + " · " + t.source; }, true));
  }

  function route() {
    var m = /^#unit=(\d+)$/.exec(location.hash);
    $("index-view").hidden = !!m;
    $("detail-view").hidden = !m;
    if (m) renderDetail(+m[1]); else renderIndex();
    window.scrollTo(0, 0);
  }

  $("title").textContent = "dgnam probe: " + data.model + " · " + data.layer;
  $("summary").textContent = data.units.length + " units · top " + data.k + " of " + data.n_images + " images" +
    (data.skipped_count ? " (" + data.skipped_count + " unreadable, skipped)" : "") + " · read as " + data.reading +
    (data.settings.steps ? " · synthesised " + (data.settings.init === "data" ? "from each unit's top images" :
      "from noise") + ", " + data.settings.steps + " steps" : "");
  $("sort").addEventListener("change", function (e) { state.sort = e.target.value; state.page = 0; renderIndex(); });
  $("filter").addEventListener("input", function (e) { state.filter = e.target.value; state.page = 0; renderIndex(); });
  $("prev").addEventListener("click", function () { state.page -= 1; renderIndex(); });
  $("next").addEventListener("click", function () { state.page += 1; renderIndex(); });
  window.addEventListener("hashchange", route);
  route();
})();
