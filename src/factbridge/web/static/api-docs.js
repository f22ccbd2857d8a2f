// Starts Swagger UI on /api/docs (kept out of the page: the CSP allows no inline script).
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  if (!root || typeof SwaggerUIBundle !== "function") { return; }
  SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    validatorUrl: null,  // no call to the online validator: the docs work offline
    deepLinking: true,
  });
})();
