// <script src="https://chex.example.com/assets/embed.js" data-team="T123" data-token="chex_bot_…"></script>
// renders the presence widget in place, in an iframe (so the host page's CSS and scripts and the
// widget's cannot touch each other).
(function () {
  const me = document.currentScript;
  const base = new URL(me.src).origin;
  const q = new URLSearchParams();
  if (me.dataset.team) q.set('team', me.dataset.team);
  if (me.dataset.users) q.set('users', me.dataset.users);
  if (me.dataset.title) q.set('title', me.dataset.title);
  const f = document.createElement('iframe');
  f.src = `${base}/widget?${q}#token=${encodeURIComponent(me.dataset.token || '')}`;
  f.title = me.dataset.title || 'Team presence';
  f.style.cssText = `border:1px solid #d0d7de;border-radius:8px;width:${me.dataset.width || '260px'};height:${me.dataset.height || '320px'}`;
  me.after(f);
}());
