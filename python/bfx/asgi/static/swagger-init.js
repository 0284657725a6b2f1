// Kept out of docs.html so the page needs no inline script. validatorUrl: null stops
// Swagger UI from calling its public validator: the docs must load nothing from the network.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
});
