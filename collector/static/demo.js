// Call Vitals demo call: its script (a file of its own, so the Content-Security-Policy allows only the collector's own scripts).
// The demo's state is on window.demo so tests and curious users can read it.
const demo = (window.demo = { state: 'starting', pcs: [], error: null });
const params = new URLSearchParams(location.search);
for (const k of ['turn', 'transport', 'username', 'credential']) {
  if (params.get(k)) document.getElementById(k).value = params.get(k);
}

function config() {
  const turn = document.getElementById('turn').value.trim();
  if (!turn) return {};
  const url = turn.includes('?') ? turn : `${turn}?transport=${document.getElementById('transport').value}`;
  return {
    iceServers: [{ urls: url, username: document.getElementById('username').value,
                   credential: document.getElementById('credential').value }],
    iceTransportPolicy: 'relay',
  };
}

function show() {
  const lines = [`call: ${demo.state}`];
  if (demo.error) lines.push(`error: ${demo.error}`);
  demo.pcs.forEach((pc, i) => lines.push(`peer ${i + 1}: ${pc.connectionState}`));
  lines.push(`relay: ${Object.keys(config()).length ? 'forced (iceTransportPolicy relay)' : 'not used'}`);
  document.getElementById('status').textContent = lines.join('\n');
}

function hangup() {
  demo.pcs.forEach((pc) => pc.close());
  demo.pcs = [];
  demo.state = 'ended';
  show();
}

async function start() {
  hangup();
  demo.state = 'starting';
  demo.error = null;
  try {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    document.getElementById('local').srcObject = media;
    const a = new RTCPeerConnection(config());
    const b = new RTCPeerConnection(config());
    demo.pcs = [a, b];
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
    b.ontrack = (e) => { document.getElementById('remote').srcObject = e.streams[0]; };
    for (const pc of demo.pcs) pc.onconnectionstatechange = () => {
      if (demo.pcs.every((p) => p.connectionState === 'connected')) demo.state = 'connected';
      if (pc.connectionState === 'failed') { demo.state = 'failed'; demo.error = 'ICE failed (is the TURN server reachable?)'; }
      show();
    };
    media.getTracks().forEach((t) => a.addTrack(t, media));
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    demo.state = 'connecting';
  } catch (e) {
    demo.state = 'failed';
    demo.error = String(e && e.message || e);
  }
  show();
}

document.getElementById('turn-form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
document.getElementById('hangup').addEventListener('click', hangup);
start();
