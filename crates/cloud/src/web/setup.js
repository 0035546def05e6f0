// eftcloud first-run setup: creates the owner with the link's token, then opens the
// dashboard (the answer sets the session cookie).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(window.location.search).get('token') || '';
  $('setup-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('setup-error').textContent = '';
    $('setup-submit').disabled = true;
    try {
      const response = await fetch('/dashboard/setup', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token, email: $('setup-email').value, password: $('setup-password').value }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
      window.location.replace('/dashboard');
    } catch (e) {
      $('setup-error').textContent = e.message;
      $('setup-submit').disabled = false;
    }
  });
})();
