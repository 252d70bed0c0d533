// The finance admin: a result-list or inline column whose cells hold amounts or counts gets its
// header right-aligned too (CSS aligns the cells; a header cannot see its column's cells).
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("#result_list, .inline-group table")) {
    const heads = table.querySelectorAll("thead th");
    heads.forEach((th, i) => {
      const cells = table.querySelectorAll(`tbody tr > :nth-child(${i + 1})`);
      if (cells.length && [...cells].some(c => c.querySelector(".money, .number"))) {
        th.classList.add("numeric-column");
      }
    });
  }
});
